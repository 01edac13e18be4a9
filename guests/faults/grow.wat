;; grow adds one 64KiB page at a time, writing to each new page as an
;; allocator would, until memory.grow fails at the memory cap, then traps
;; the way a failed allocation does in most languages' runtimes: the host
;; must answer 500 and count a memory failure.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (local $old i32)
    (loop $more
      (local.set $old (memory.grow (i32.const 1)))
      (if (i32.ne (local.get $old) (i32.const -1))
        (then
          (i32.store8 (i32.mul (local.get $old) (i32.const 65536)) (i32.const 1))
          (br $more))))
    unreachable))
