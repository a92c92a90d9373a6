-- bench/lua/net_goro.lua — goro's side of bench/net.sh (shared/API.md, Time
-- and Network):
--
--   LUA_CPATH="build/release/?.so;;" lua5.4 bench/lua/net_goro.lua w6 [-n 100000]
--   LUA_CPATH="build/release/?.so;;" lua5.4 bench/lua/net_goro.lua serve echo|http [-limit 300]
--
-- w6: n goroutines, each go.sleep(d_i) with d_i spread over [0, 1 s)
-- (netbench.w6_delay); prints the wall time and the worst lateness.
-- serve: listens on 127.0.0.1 (a port the kernel picks), prints
-- "LISTEN 127.0.0.1:<port>", and runs one goroutine per connection: echo
-- writes back what it reads until EOF; http answers every request `hello`
-- (netbench.feed), keep-alive.  It exits by itself after -limit seconds.
-- GOMAXPROCS is goro's default (the CPUs, or env GORO_MAXPROCS).

local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. package.path
local N = require "netbench"
local go = require "goro"

local PROG = "net_goro"
local mode, what, n, limit = N.args(PROG, arg)

if mode == "w6" then
  N.w6(PROG, n, go, go.sleep, go.wait, go.now)
  return
end

-- serve
if not go.net then N.fail(PROG, "this goro module has no go.net") end
local l, err = go.net.listen("127.0.0.1:0", { backlog = 1024 })
if not l then N.fail(PROG, "listen: %s", err) end

local handler = N.handler(what,
  function(c) return c:read() end,
  function(c, s) return c:write(s) end)

go(function()
  go.sleep(limit)
  io.stderr:write(PROG, ": server: -limit ", limit, " s reached, exiting\n")
  os.exit(3)
end)
go(function()
  while true do
    local c, aerr = l:accept()
    if c then
      go(handler, c)
    elseif aerr == "closed" then
      return
    else
      io.stderr:write(PROG, ": accept: ", tostring(aerr), "\n")
      go.sleep(0.01)                -- e.g. out of file descriptors: retry
    end
  end
end)
N.listening(l:addr())
go.wait()
