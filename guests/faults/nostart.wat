;; nostart is a WASI reactor (it exports _initialize, not _start): Load
;; must reject it as not a command module.
(module
  (memory (export "memory") 1)
  (func (export "_initialize")))
