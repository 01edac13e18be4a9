;; cache runs one tern_cache operation from its query items and reports
;; the result: /c?put&KEY&VALUE stores VALUE as a fresh text/plain 200
;; (max-age=60), /c?putnostore&KEY&VALUE the same with no-store,
;; /c?get&KEY answers "value=VALUE" and the stored header lines,
;; /c?small&KEY gets into a 1-byte body buffer and reports the needed
;; length, /c?delete&KEY removes the entry. Failures answer "error=N" with
;; the tern_cache error code.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get"
    (func $args_get (param i32 i32) (result i32)))
  (import "tern_cache" "get"
    (func $get (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "tern_cache" "put"
    (func $put (param i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "tern_cache" "delete"
    (func $delete (param i32 i32) (result i32)))
  (memory (export "memory") 1)

  (data (i32.const 64) "Content-Type: text/plain\n\n")   ;; 26
  (data (i32.const 96) "ok\n")                            ;; 3
  (data (i32.const 112) "value=")                         ;; 6
  (data (i32.const 128) "error=")                         ;; 6
  (data (i32.const 144) "\n")                             ;; 1
  (data (i32.const 160) " len=")                          ;; 5
  (data (i32.const 176) "cache-control:max-age=60\ncontent-type:text/plain\n") ;; 49
  (data (i32.const 240) "cache-control:no-store\n")      ;; 23
  ;; 16..20: argc, argv size; 32..44: get's res; 512: decimal digits;
  ;; 1024: argv pointers; 2048: argv strings; 8192: body buffer (4096);
  ;; 16384: header buffer (4096).

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

  (func $store (param $key i32) (param $val i32) (param $hdr i32) (param $hdrLen i32)
    (call $report (call $put
      (local.get $key) (call $strlen (local.get $key))
      (i32.const 200) (local.get $hdr) (local.get $hdrLen)
      (local.get $val) (call $strlen (local.get $val)))))

  (func (export "_start")
    (local $op i32) (local $key i32) (local $val i32) (local $err i32)
    (call $write (i32.const 64) (i32.const 26))
    (drop (call $args_sizes_get (i32.const 16) (i32.const 20)))
    (drop (call $args_get (i32.const 1024) (i32.const 2048)))
    (local.set $op (i32.load8_u (call $arg (i32.const 1))))
    (local.set $key (call $arg (i32.const 2)))
    (local.set $val (call $arg (i32.const 3)))
    ;; 'p'ut and 'p'utnostore: told apart by their length
    (if (i32.eq (local.get $op) (i32.const 112))
      (then
        (if (i32.eq (call $strlen (call $arg (i32.const 1))) (i32.const 3))
          (then (call $store (local.get $key) (local.get $val) (i32.const 176) (i32.const 49)))
          (else (call $store (local.get $key) (local.get $val) (i32.const 240) (i32.const 23))))
        (return)))
    ;; 'd'elete
    (if (i32.eq (local.get $op) (i32.const 100))
      (then
        (call $report (call $delete (local.get $key) (call $strlen (local.get $key))))
        (return)))
    ;; 's'mall: a 1-byte body buffer; report the length the host asks for
    (if (i32.eq (local.get $op) (i32.const 115))
      (then
        (local.set $err (call $get
          (local.get $key) (call $strlen (local.get $key))
          (i32.const 16384) (i32.const 4096) (i32.const 8192) (i32.const 1) (i32.const 32)))
        (call $write (i32.const 128) (i32.const 6))
        (call $itoa (local.get $err))
        (call $write (i32.const 160) (i32.const 5))
        (call $itoa (i32.load (i32.const 40)))
        (call $write (i32.const 144) (i32.const 1))
        (return)))
    ;; 'g'et
    (local.set $err (call $get
      (local.get $key) (call $strlen (local.get $key))
      (i32.const 16384) (i32.const 4096) (i32.const 8192) (i32.const 4096) (i32.const 32)))
    (if (local.get $err)
      (then (call $report (local.get $err)) (return)))
    (call $write (i32.const 112) (i32.const 6))
    (call $write (i32.const 8192) (i32.load (i32.const 40)))
    (call $write (i32.const 144) (i32.const 1))
    (call $write (i32.const 16384) (i32.load (i32.const 36)))))
