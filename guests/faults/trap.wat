;; trap executes `unreachable`: the host must answer 500 and log a trap.
(module
  (memory (export "memory") 1)
  (func (export "_start")
    unreachable))
