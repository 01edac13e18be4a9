;; fetch makes one outbound request with wasi_experimental_http, as WAGI
;; guests do: GET the URL given as the first query item
;; (/fetch?http://host/path), sending the header "X-From-Guest: tern", and
;; report what came back:
;;
;;   status=200
;;   content-type=text/plain
;;   body=...
;;
;; or "error=N" with the API's error code when the call fails.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get"
    (func $args_get (param i32 i32) (result i32)))
  (import "wasi_experimental_http" "req"
    (func $req (param i32 i32 i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_experimental_http" "header_get"
    (func $header_get (param i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_experimental_http" "body_read"
    (func $body_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_experimental_http" "close"
    (func $close (param i32) (result i32)))
  (memory (export "memory") 2)

  ;; 0..63: iovec and scratch words. 64..: constants.
  (data (i32.const 64) "Content-Type: text/plain\n\n")   ;; 26
  (data (i32.const 96) "GET")                             ;; 3
  (data (i32.const 112) "X-From-Guest:tern\n")            ;; 18
  (data (i32.const 144) "content-type")                   ;; 12
  (data (i32.const 160) "status=")                        ;; 7
  (data (i32.const 176) "\ncontent-type=")                ;; 14
  (data (i32.const 192) "\nbody=")                        ;; 6
  (data (i32.const 208) "error=")                         ;; 6
  (data (i32.const 224) "\n")                             ;; 1
  ;; 1024: argv pointers; 2048: argv strings; 4096: header value;
  ;; 8192: body buffer; 512: decimal digits.

  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))

  ;; strlen of a NUL-terminated string.
  (func $strlen (param $p i32) (result i32)
    (local $n i32)
    (block $done
      (loop $next
        (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $next)))
    (local.get $n))

  ;; writes n in decimal.
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

  (func $fail (param $code i32)
    (call $write (i32.const 208) (i32.const 6))
    (call $itoa (local.get $code))
    (call $write (i32.const 224) (i32.const 1)))

  (func (export "_start")
    (local $url i32) (local $err i32) (local $handle i32) (local $n i32)
    (call $write (i32.const 64) (i32.const 26))
    (drop (call $args_sizes_get (i32.const 16) (i32.const 20)))
    (drop (call $args_get (i32.const 1024) (i32.const 2048)))
    (if (i32.lt_u (i32.load (i32.const 16)) (i32.const 2))
      (then (call $fail (i32.const 10)) (return)))
    (local.set $url (i32.load (i32.const 1028)))

    ;; req(url, method, headers, body, &status, &handle)
    (local.set $err (call $req
      (local.get $url) (call $strlen (local.get $url))
      (i32.const 96) (i32.const 3)
      (i32.const 112) (i32.const 18)
      (i32.const 0) (i32.const 0)
      (i32.const 24) (i32.const 28)))
    (if (local.get $err)
      (then (call $fail (local.get $err)) (return)))
    (local.set $handle (i32.load (i32.const 28)))

    (call $write (i32.const 160) (i32.const 7))
    (call $itoa (i32.load16_u (i32.const 24)))

    (call $write (i32.const 176) (i32.const 14))
    (local.set $err (call $header_get (local.get $handle)
      (i32.const 144) (i32.const 12) (i32.const 4096) (i32.const 1024) (i32.const 32)))
    (if (i32.eqz (local.get $err))
      (then (call $write (i32.const 4096) (i32.load (i32.const 32)))))

    (call $write (i32.const 192) (i32.const 6))
    (loop $more
      (local.set $err (call $body_read (local.get $handle)
        (i32.const 8192) (i32.const 4096) (i32.const 36)))
      (local.set $n (i32.load (i32.const 36)))
      (if (i32.and (i32.eqz (local.get $err)) (i32.gt_u (local.get $n) (i32.const 0)))
        (then
          (call $write (i32.const 8192) (local.get $n))
          (br $more))))
    (drop (call $close (local.get $handle)))))
