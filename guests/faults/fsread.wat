;; fsread tries one path against the first preopened directory (fd 3) and
;; reports what the host allowed. The query string is OPERATION&PATH, the
;; path relative to the mount and passed as is, so that "..", links and
;; odd names reach the host unchanged:
;;
;;   ?read&PATH   open PATH, following links, and print up to 4 KiB of it
;;   ?list&PATH   open PATH as a directory and print its entry names
;;   ?stat&PATH   stat PATH, following links
;;
;; It answers "ok\n" and the result, or "error=N\n" with the WASI errno.
(module
  (import "wasi_snapshot_preview1" "fd_write"
    (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read"
    (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_readdir"
    (func $fd_readdir (param i32 i32 i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open"
    (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_filestat_get"
    (func $path_filestat_get (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_sizes_get"
    (func $args_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get"
    (func $args_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)

  ;; 0..63: scratch (iovec, results). 256..: constant strings.
  ;; 1024: argv pointers; 2048: argv bytes; 8192: file or directory data;
  ;; 16384: filestat.
  (data (i32.const 256) "Content-Type: text/plain\n\n") ;; 26
  (data (i32.const 288) "ok\n")                         ;; 3
  (data (i32.const 296) "error=")                       ;; 6
  (data (i32.const 304) "\n")                           ;; 1
  (data (i32.const 312) "usage: ?read|list|stat&PATH\n") ;; 28

  (func $write (param $ptr i32) (param $len i32)
    (i32.store (i32.const 0) (local.get $ptr))
    (i32.store (i32.const 4) (local.get $len))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 8))))

  ;; error prints "error=N\n" for an errno under 100.
  (func $error (param $errno i32)
    (call $write (i32.const 296) (i32.const 6))
    (if (i32.ge_u (local.get $errno) (i32.const 10))
      (then
        (i32.store8 (i32.const 48) (i32.add (i32.const 48) (i32.div_u (local.get $errno) (i32.const 10))))
        (call $write (i32.const 48) (i32.const 1))))
    (i32.store8 (i32.const 48) (i32.add (i32.const 48) (i32.rem_u (local.get $errno) (i32.const 10))))
    (call $write (i32.const 48) (i32.const 1))
    (call $write (i32.const 304) (i32.const 1)))

  ;; strlen of a NUL-terminated string.
  (func $strlen (param $p i32) (result i32)
    (local $n i32)
    (block $done
      (loop $more
        (br_if $done (i32.eqz (i32.load8_u (i32.add (local.get $p) (local.get $n)))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $more)))
    (local.get $n))

  (func (export "_start")
    (local $path i32) (local $len i32) (local $op i32) (local $errno i32)
    (local $fd i32) (local $pos i32) (local $end i32) (local $namelen i32)
    (call $write (i32.const 256) (i32.const 26))
    (drop (call $args_sizes_get (i32.const 16) (i32.const 20)))
    (if (i32.lt_u (i32.load (i32.const 16)) (i32.const 3))
      (then (call $write (i32.const 312) (i32.const 28)) (return)))
    (drop (call $args_get (i32.const 1024) (i32.const 2048)))
    (local.set $op (i32.load8_u (i32.load (i32.const 1028))))
    (local.set $path (i32.load (i32.const 1032)))
    (local.set $len (call $strlen (local.get $path)))

    ;; stat
    (if (i32.eq (local.get $op) (i32.const 115)) ;; 's'
      (then
        (local.set $errno (call $path_filestat_get (i32.const 3) (i32.const 1)
          (local.get $path) (local.get $len) (i32.const 16384)))
        (if (local.get $errno)
          (then (call $error (local.get $errno)))
          (else (call $write (i32.const 288) (i32.const 3))))
        (return)))

    ;; read or list: open, following links (lookupflags 1); list opens a
    ;; directory (oflags 2) with fd_readdir rights, read with fd_read.
    (local.set $errno (call $path_open (i32.const 3) (i32.const 1)
      (local.get $path) (local.get $len)
      (select (i32.const 2) (i32.const 0) (i32.eq (local.get $op) (i32.const 108))) ;; 'l'
      (i64.const 16386) (i64.const 0) (i32.const 0) (i32.const 24)))
    (if (local.get $errno)
      (then (call $error (local.get $errno)) (return)))
    (local.set $fd (i32.load (i32.const 24)))

    (if (i32.eq (local.get $op) (i32.const 108))
      (then
        (local.set $errno (call $fd_readdir (local.get $fd) (i32.const 8192) (i32.const 8192)
          (i64.const 0) (i32.const 28)))
        (if (local.get $errno)
          (then (call $error (local.get $errno)) (return)))
        (call $write (i32.const 288) (i32.const 3))
        ;; Each dirent: next u64, ino u64, namlen u32, type u8, 3 bytes of
        ;; padding, then the name.
        (local.set $pos (i32.const 8192))
        (local.set $end (i32.add (i32.const 8192) (i32.load (i32.const 28))))
        (block $done
          (loop $next
            (br_if $done (i32.gt_u (i32.add (local.get $pos) (i32.const 24)) (local.get $end)))
            (local.set $namelen (i32.load (i32.add (local.get $pos) (i32.const 16))))
            (br_if $done (i32.gt_u (i32.add (i32.add (local.get $pos) (i32.const 24)) (local.get $namelen)) (local.get $end)))
            (call $write (i32.add (local.get $pos) (i32.const 24)) (local.get $namelen))
            (call $write (i32.const 304) (i32.const 1))
            (local.set $pos (i32.add (local.get $pos) (i32.add (i32.const 24) (local.get $namelen))))
            (br $next)))
        (return)))

    ;; read: iovec at 32 = {8192, 4096}, bytes read at 40.
    (i32.store (i32.const 32) (i32.const 8192))
    (i32.store (i32.const 36) (i32.const 4096))
    (local.set $errno (call $fd_read (local.get $fd) (i32.const 32) (i32.const 1) (i32.const 40)))
    (if (local.get $errno)
      (then (call $error (local.get $errno)) (return)))
    (call $write (i32.const 288) (i32.const 3))
    (call $write (i32.const 8192) (i32.load (i32.const 40)))))
