;; huge writes a valid header block, then 64KiB body chunks forever,
;; ignoring write errors: the host must stop it as soon as it passes the
;; response cap, well before the request deadline.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (data (i32.const 64) "Content-Type: application/octet-stream\n\n")

  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))

  (func (export "_start")
    (call $write (i32.const 64) (i32.const 40))
    (loop $forever
      ;; The chunk is the second page: 64KiB of zeros.
      (call $write (i32.const 65536) (i32.const 65536))
      (br $forever))))
