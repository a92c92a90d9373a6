-- bench/lua/net_luv.lua — the luv peer of bench/net.sh (Debian lua-luv:
-- libuv's event loop for Lua, callbacks, one thread):
--
--   lua5.4 bench/lua/net_luv.lua w6 [-n 100000]
--   lua5.4 bench/lua/net_luv.lua serve echo|http [-limit 300]
--
-- w6: n libuv timers of d_i each (netbench.w6_delay; libuv counts whole
-- milliseconds from its cached loop time, so each timer aims at the first
-- whole millisecond of that clock at or after t0 + d_i: never early);
-- prints the wall time and the worst lateness, measured against d_i itself
-- on uv.hrtime.  serve: as net_goro.lua, with read_start callbacks; echo
-- writes back every chunk read until EOF, http answers through
-- netbench.feed, keep-alive.  Exits by itself after -limit seconds.

local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. package.path
local N = require "netbench"
local uv = require "luv"

local PROG = "net_luv"
local mode, what, n, limit = N.args(PROG, arg)
local hrtime = uv.hrtime

if mode == "w6" then
  local delay = N.w6_delay
  local worst, woke = 0, 0
  local start = hrtime()
  for i = 0, n - 1 do
    local d = delay(i, n)
    local t = uv.new_timer()
    local t0 = hrtime()
    -- libuv counts from the loop's cached time (uv.now, whole ms), stale
    -- while this loop runs: aim at t0 + d on that clock.
    local ms = math.ceil((t0 + d * 1e9) / 1e6 - uv.now())
    t:start(ms > 0 and ms or 0, 0, function()
      local late = (hrtime() - t0) / 1e9 - d
      if late < 0 then N.fail(PROG, "W6: a timer fired %.0f ns early", -late * 1e9) end
      if late > worst then worst = late end
      woke = woke + 1
      t:close()
    end)
  end
  uv.run()
  local wall = (hrtime() - start) / 1e9
  if woke ~= n then N.fail(PROG, "W6: %d of %d fired", woke, n) end
  N.w6_result(wall, worst)
  return
end

-- serve
local server = uv.new_tcp()
local ok, err = server:bind("127.0.0.1", 0)
if not ok then N.fail(PROG, "bind: %s", err) end

local function close(c)
  if not c:is_closing() then c:close() end
end

-- A peer that sends and does not read: stop reading while more than this
-- waits to be written, resume once that write is done.
local HIGH = 1024 * 1024

local feed = N.feed
local function on_connection(c)
  if what == "echo" then
    local reader
    reader = function(rerr, data)
      if rerr or not data then return close(c) end
      if c:get_write_queue_size() < HIGH then
        c:write(data)
      else
        c:read_stop()
        c:write(data, function(werr)
          if werr then return close(c) end
          if not c:is_closing() then c:read_start(reader) end
        end)
      end
    end
    c:read_start(reader)
  else
    local buf = ""
    c:read_start(function(rerr, data)
      if rerr or not data then return close(c) end
      buf = buf == "" and data or buf .. data
      local out, rest, closing = feed(buf)
      buf = rest
      if out then c:write(out) end
      if closing then
        c:read_stop()
        c:shutdown(function() close(c) end)
      end
    end)
  end
end

ok, err = server:listen(1024, function(lerr)
  if lerr then
    io.stderr:write(PROG, ": listen callback: ", tostring(lerr), "\n")
    return
  end
  local c = uv.new_tcp()
  local aok, aerr = server:accept(c)
  if not aok then
    io.stderr:write(PROG, ": accept: ", tostring(aerr), "\n")
    return close(c)
  end
  c:nodelay(true)
  on_connection(c)
end)
if not ok then N.fail(PROG, "listen: %s", err) end

local limiter = uv.new_timer()
limiter:start(math.floor(limit * 1e3), 0, function()
  io.stderr:write(PROG, ": server: -limit ", limit, " s reached, exiting\n")
  os.exit(3)
end)

local name = server:getsockname()
N.listening(name.ip .. ":" .. name.port)
uv.run()
