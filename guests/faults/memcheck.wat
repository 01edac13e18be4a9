;; memcheck checks that its memory starts zeroed, including pages it grows,
;; then scribbles over it: run twice, it catches a host that hands one
;; instance's memory to the next without clearing it.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "Content-Type: text/plain\n\n")  ;; 26
  (data (i32.const 96) "clean\n")                      ;; 6
  (data (i32.const 112) "dirty\n")                     ;; 6

  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))

  ;; dirty returns 1 if any 8-byte word in [from, to) is not zero.
  (func $dirty (param $from i32) (param $to i32) (result i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $from) (local.get $to)))
        (if (i64.ne (i64.load (local.get $from)) (i64.const 0))
          (then (return (i32.const 1))))
        (local.set $from (i32.add (local.get $from) (i32.const 8)))
        (br $next)))
    (i32.const 0))

  (func (export "_start")
    (local $bad i32)
    (call $write (i32.const 64) (i32.const 26))
    ;; The first page, past the data segments, must be zero.
    (local.set $bad (call $dirty (i32.const 1024) (i32.const 65536)))
    (i64.store (i32.const 2048) (i64.const -1))
    (i64.store (i32.const 65528) (i64.const -1))
    ;; So must three grown pages.
    (drop (memory.grow (i32.const 3)))
    (local.set $bad (i32.or (local.get $bad)
      (call $dirty (i32.const 65536) (i32.const 262144))))
    (i64.store (i32.const 100000) (i64.const -1))
    (i64.store (i32.const 262136) (i64.const -1))
    (if (local.get $bad)
      (then (call $write (i32.const 112) (i32.const 6)))
      (else (call $write (i32.const 96) (i32.const 6))))))
