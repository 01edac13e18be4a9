-- wrk script: every request asks for a URL not asked before, the
-- prefix given after "--" followed by a counter, so each is a cache miss.
local prefix, n = "", 0
function init(args) prefix = args[1] end
function request()
  n = n + 1
  return wrk.format("GET", prefix .. n)
end
