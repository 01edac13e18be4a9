;; grow adds one 64KiB page at a time until memory.grow fails at the
;; memory cap, then traps the way a failed allocation does in most
;; languages' runtimes: the host must answer 500 and count a memory failure.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $more
      (br_if $more
        (i32.ne (memory.grow (i32.const 1)) (i32.const -1))))
    unreachable))
