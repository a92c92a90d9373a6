-- bench/lua/net_cqueues.lua — the cqueues peer of bench/net.sh (Debian
-- lua-cqueues: coroutines on an epoll loop, one thread):
--
--   lua5.4 bench/lua/net_cqueues.lua w6 [-n 100000]
--   lua5.4 bench/lua/net_cqueues.lua serve echo|http [-limit 300]
--
-- w6: n coroutines (cq:wrap), each cqueues.sleep(d_i) (netbench.w6_delay);
-- prints the wall time and the worst lateness on cqueues.monotime.
-- serve: as net_goro.lua, one coroutine per connection (srv:clients()),
-- binary mode without output buffering: echo writes back what it reads
-- (xread of up to 16 KiB) until EOF, http answers through netbench.feed,
-- keep-alive.  Exits by itself after -limit seconds.

local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. package.path
local N = require "netbench"
local cqueues = require "cqueues"
local socket = require "cqueues.socket"

local PROG = "net_cqueues"
local mode, what, n, limit = N.args(PROG, arg)
local monotime = cqueues.monotime
local cq = cqueues.new()

local function loop()
  local ok, err = cq:loop()
  if not ok then N.fail(PROG, "loop: %s", tostring(err)) end
end

if mode == "w6" then
  N.w6(PROG, n, function(fn, d) cq:wrap(fn, d) end, cqueues.sleep, loop, monotime)
  return
end

-- serve
local srv, err = socket.listen{ host = "127.0.0.1", port = 0, backlog = 1024, sin_nodelay = true }
if not srv then N.fail(PROG, "listen: %s", tostring(err)) end
local ok, lerr = srv:listen()
if not ok then N.fail(PROG, "listen: %s", tostring(lerr)) end

local handler = N.handler(what,
  function(c) return c:xread(-16384, "b") end,
  function(c, s) return c:xwrite(s, "bn") end)

-- cqueues' default error handler raises (a reset peer would end the loop):
-- return errors instead, as nil, why.
local function return_error(_, _, why) return why end

cq:wrap(function()
  cqueues.sleep(limit)
  io.stderr:write(PROG, ": server: -limit ", limit, " s reached, exiting\n")
  os.exit(3)
end)
cq:wrap(function()
  for c in srv:clients() do
    c:setmode("b", "bn")
    c:onerror(return_error)
    cq:wrap(handler, c)
  end
end)
local _, ip, port = srv:localname()
N.listening(ip .. ":" .. port)
loop()
