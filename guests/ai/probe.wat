;; probe calls tern_ai with pointers a careless or hostile guest could
;; pass, and answers the codes it got, space-separated:
;;   infer: model, prompt, params, res, out outside memory (8 each);
;;   embed with a truncated text list (3); last_error into memory it does
;;   not have (0), then with no buffer (the message's length); infer with
;;   an empty model name (3).
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "tern_ai" "infer"
    (func $infer (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "tern_ai" "embed"
    (func $embed (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "tern_ai" "last_error"
    (func $last_error (param i32 i32) (result i32)))
  (memory (export "memory") 1)

  (data (i32.const 64) "Content-Type: text/plain\n\n")   ;; 26
  (data (i32.const 256) "echo-llm")                       ;; 8
  (data (i32.const 300) "hi\00")                          ;; prompt "hi"; 3 bytes as a text list
  (data (i32.const 400) " ")
  (data (i32.const 401) "\n")
  ;; 512: res; 1024: out; 600..: decimal digits.

  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))

  (func $code (param $n i32)
    (local $p i32)
    (local.set $p (i32.const 640))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p)
        (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digit (local.get $n)))
    (call $write (local.get $p) (i32.sub (i32.const 640) (local.get $p)))
    (call $write (i32.const 400) (i32.const 1)))

  (func (export "_start")
    (call $write (i32.const 64) (i32.const 26))
    (call $code (call $infer (i32.const 0xffffff00) (i32.const 8) (i32.const 300) (i32.const 2)
      (i32.const 0) (i32.const 1024) (i32.const 64) (i32.const 512)))
    (call $code (call $infer (i32.const 256) (i32.const 8) (i32.const 0xffffff00) (i32.const 2)
      (i32.const 0) (i32.const 1024) (i32.const 64) (i32.const 512)))
    (call $code (call $infer (i32.const 256) (i32.const 8) (i32.const 300) (i32.const 2)
      (i32.const 0xfffffff0) (i32.const 1024) (i32.const 64) (i32.const 512)))
    (call $code (call $infer (i32.const 256) (i32.const 8) (i32.const 300) (i32.const 2)
      (i32.const 0) (i32.const 1024) (i32.const 64) (i32.const 0xfffffff0)))
    (call $code (call $infer (i32.const 256) (i32.const 8) (i32.const 300) (i32.const 2)
      (i32.const 0) (i32.const 0xffffff00) (i32.const 4096) (i32.const 512)))
    (call $code (call $embed (i32.const 256) (i32.const 8) (i32.const 300) (i32.const 3)
      (i32.const 1024) (i32.const 64) (i32.const 512)))
    (call $code (call $last_error (i32.const 0xfffffff0) (i32.const 64)))
    (call $code (call $last_error (i32.const 1024) (i32.const 0)))
    (call $code (call $infer (i32.const 256) (i32.const 0) (i32.const 300) (i32.const 2)
      (i32.const 0) (i32.const 1024) (i32.const 64) (i32.const 512)))
    (call $write (i32.const 401) (i32.const 1))))
