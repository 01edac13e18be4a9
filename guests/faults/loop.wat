;; loop never returns, writing to its memory all the while: the host must
;; stop it at the request deadline and answer 504, and must not take its
;; memory away while it runs.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $forever
      (i32.store (i32.const 65532) (i32.add (i32.load (i32.const 65532)) (i32.const 1)))
      (br $forever))))
