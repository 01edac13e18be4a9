;; bigmem declares a 128MiB minimum memory, over the default 64MiB cap:
;; Load must reject it, naming the limit.
(module
  (memory (export "memory") 2048)
  (func (export "_start")))
