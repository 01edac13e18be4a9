;; status answers with a CGI Status header: the host must send 404 with
;; the body.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "Status: 404 Not Found\nContent-Type: text/plain\nX-Tern-Test: a\nX-Tern-Test: b\n\nno such thing\n")

  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 92))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8)))))
