;; kv runs one key-value operation from its query items and reports the
;; result: /kv?set&KEY&VALUE, /kv?get&KEY or /kv?delete&KEY answer
;; "ok", "value=VALUE", or "error=N" with the tern_kv error code.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get"
    (func $args_get (param i32 i32) (result i32)))
  (import "tern_kv" "get"
    (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "tern_kv" "set"
    (func $set (param i32 i32 i32 i32) (result i32)))
  (import "tern_kv" "delete"
    (func $delete (param i32 i32) (result i32)))
  (memory (export "memory") 1)

  (data (i32.const 64) "Content-Type: text/plain\n\n")   ;; 26
  (data (i32.const 96) "ok\n")                            ;; 3
  (data (i32.const 112) "value=")                         ;; 6
  (data (i32.const 128) "error=")                         ;; 6
  (data (i32.const 144) "\n")                             ;; 1
  ;; 1024: argv pointers; 2048: argv strings; 8192: value buffer (4096);
  ;; 512: decimal digits.

  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))

  (func $strlen (param $p i32) (result i32)
    (local $n i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $n))

  (func $itoa (param $n i32)
    (local $p i32)
    (local.set $p (i32.const 528))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p)
        (i32.add (i32.const 48) (i32.rem_u (local.get $n) (i32.const 10))))
      (local.set $n (i32.div_u (local.get $n) (i32.const 10)))
      (br_if $digit (local.get $n)))
    (call $write (local.get $p) (i32.sub (i32.const 528) (local.get $p))))

  ;; arg returns the address of argv[i]; a missing argument is "".
  (func $arg (param $i i32) (result i32)
    (if (i32.ge_u (local.get $i) (i32.load (i32.const 16)))
      (then (return (i32.const 150))))
    (i32.load (i32.add (i32.const 1024) (i32.mul (local.get $i) (i32.const 4)))))

  (func $report (param $err i32)
    (if (local.get $err)
      (then
        (call $write (i32.const 128) (i32.const 6))
        (call $itoa (local.get $err))
        (call $write (i32.const 144) (i32.const 1)))
      (else (call $write (i32.const 96) (i32.const 3)))))

  (func (export "_start")
    (local $op i32) (local $key i32) (local $val i32) (local $err i32)
    (call $write (i32.const 64) (i32.const 26))
    (drop (call $args_sizes_get (i32.const 16) (i32.const 20)))
    (drop (call $args_get (i32.const 1024) (i32.const 2048)))
    (local.set $op (i32.load8_u (call $arg (i32.const 1))))
    (local.set $key (call $arg (i32.const 2)))
    (local.set $val (call $arg (i32.const 3)))
    ;; 's'et
    (if (i32.eq (local.get $op) (i32.const 115))
      (then
        (call $report (call $set
          (local.get $key) (call $strlen (local.get $key))
          (local.get $val) (call $strlen (local.get $val))))
        (return)))
    ;; 'd'elete
    (if (i32.eq (local.get $op) (i32.const 100))
      (then
        (call $report (call $delete (local.get $key) (call $strlen (local.get $key))))
        (return)))
    ;; 'g'et: get(key, buf, buf_len, &value_len)
    (local.set $err (call $get
      (local.get $key) (call $strlen (local.get $key))
      (i32.const 8192) (i32.const 4096) (i32.const 24)))
    (if (local.get $err)
      (then (call $report (local.get $err)) (return)))
    (call $write (i32.const 112) (i32.const 6))
    (call $write (i32.const 8192) (i32.load (i32.const 24)))
    (call $write (i32.const 144) (i32.const 1))))
