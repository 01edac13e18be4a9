;; badimport imports a function the host does not provide: Load must
;; reject it, naming the import.
(module
  (import "env" "tern_missing" (func $missing))
  (memory (export "memory") 1)
  (func (export "_start")
    (call $missing)))
