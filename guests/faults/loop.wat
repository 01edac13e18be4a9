;; loop never returns: the host must stop it at the request deadline and
;; answer 504.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    (loop $forever
      (br $forever))))
