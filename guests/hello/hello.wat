;; hello is the smallest useful WAGI guest: it writes a CGI response to
;; stdout with one fd_write call and returns from _start.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)

  ;; The response: a header block, a blank line, then the body.
  (data (i32.const 64) "Content-Type: text/plain\n\nHello from Tern!\n")

  (func (export "_start")
    ;; One iovec at offset 0: {buf = 64, len = 43}.
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 43))
    ;; fd 1 is stdout; the number of bytes written goes to offset 8.
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
