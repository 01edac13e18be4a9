;; fsprobe reports what filesystem the host granted. With no preopened
;; directory it answers "no preopens". With one (fd 3) it prints the
;; contents of hello.txt in it, then tries to create new.txt and reports
;; whether the write was allowed: a read-only mount must deny it.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_prestat_get"
    (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (memory (export "memory") 1)

  (data (i32.const 256) "Content-Type: text/plain\n\n")          ;; 26
  (data (i32.const 320) "no preopens\n")                         ;; 12
  (data (i32.const 352) "read: denied\n")                        ;; 13
  (data (i32.const 384) "write: allowed\n")                      ;; 15
  (data (i32.const 416) "write: denied\n")                       ;; 14
  (data (i32.const 448) "hello.txt")                             ;; 9
  (data (i32.const 480) "new.txt")                               ;; 7

  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))

  (func (export "_start")
    (call $write (i32.const 256) (i32.const 26))
    ;; fd 3 is the first preopen, if there is one.
    (if (i32.ne (call $fd_prestat_get (i32.const 3) (i32.const 16)) (i32.const 0))
      (then
        (call $write (i32.const 320) (i32.const 12))
        (return)))
    ;; Open hello.txt for reading (rights: fd_read) and copy it to stdout.
    (if (i32.eqz (call $path_open (i32.const 3) (i32.const 0)
                   (i32.const 448) (i32.const 9) (i32.const 0)
                   (i64.const 2) (i64.const 0) (i32.const 0) (i32.const 32)))
      (then
        ;; iovec at 40: {buf = 1024, len = 4096}; bytes read at 48.
        (i32.store (i32.const 40) (i32.const 1024))
        (i32.store (i32.const 44) (i32.const 4096))
        (drop (call $fd_read (i32.load (i32.const 32)) (i32.const 40) (i32.const 1) (i32.const 48)))
        (call $write (i32.const 1024) (i32.load (i32.const 48))))
      (else
        (call $write (i32.const 352) (i32.const 13))))
    ;; Create new.txt (oflags: creat; rights: fd_write).
    (if (i32.eqz (call $path_open (i32.const 3) (i32.const 0)
                   (i32.const 480) (i32.const 7) (i32.const 1)
                   (i64.const 64) (i64.const 0) (i32.const 0) (i32.const 36)))
      (then (call $write (i32.const 384) (i32.const 15)))
      (else (call $write (i32.const 416) (i32.const 14))))))
