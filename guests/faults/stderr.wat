;; stderr writes two lines and an unterminated fragment to stderr, in
;; pieces, then a normal response: the host must log each line with the
;; app name and still answer 200.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "first line\nsecond")
  (data (i32.const 96) " line\nno newline at end")
  (data (i32.const 128) "Content-Type: text/plain\n\nlogged\n")

  (func $write (param $fd i32) (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (local.get $fd) (i32.const 0) (i32.const 1) (i32.const 8))))

  (func (export "_start")
    (call $write (i32.const 2) (i32.const 64) (i32.const 17))
    (call $write (i32.const 2) (i32.const 96) (i32.const 23))
    (call $write (i32.const 1) (i32.const 128) (i32.const 33))))
