-- bench/lua/goro_bench.lua — goro's Lua goroutines in the benchmark suite:
-- the workloads of workloads.lua (those of bench/go/main.go) on goro's Lua
-- module (`require "goro"`, shared/API.md).
--
--   LUA_CPATH="build/release/?.so;;" lua5.4 bench/lua/goro_bench.lua -w W2 -n 1000000 -procs 2
--
-- prints one line, "RESULT <workload> <value> <unit>" (see harness.lua).
-- -procs P sets go.gomaxprocs(P) before the first goroutine (0: goro's
-- default).  The clock is go.now when the module has it, otherwise
-- `date +%s%N` (harness.lua).

local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. package.path
local H = require "harness"

H.main("goro_bench", arg, function(procs)
  local go = require "goro"
  if procs > 0 then go.gomaxprocs(procs) end
  if go.now then
    H.use_clock(function() return go.now() * 1e9 end)
  end
  return go
end)
