-- Ctrl-C while the main thread waits in goro: lua5.4 stops a script on
-- SIGINT with a hook that raises "interrupted!", and goro must let that
-- hook act however the main thread is blocked (lblock.c, "Interrupts").
--
-- Each case runs a child lua5.4 that prints its pid and blocks; the
-- signal is sent only once the kernel reports the main thread asleep on a
-- futex (/proc/PID/task/PID/wchan), so it lands during the wait, not
-- before it (a signal before the wait is acted on by the hook at once,
-- and would prove nothing).  A goroutine asleep for a minute keeps the
-- deadlock check quiet.
local H = require "spec.helper"
local go = require "goro"

local prelude = [[
local go = require "goro"
local pid = io.open("/proc/self/stat"):read("n")
go(function() go.sleep(60) end)
]]

local cases = {
  ["ch:recv()"] = "go.chan():recv()",
  ["ch:send()"] = "go.chan():send(1)",
  ["go.select"] = "go.select{go.chan(), {go.chan(), 1}}",
  ["go.wait()"] = "go.wait()",
  ["go.sleep()"] = "go.sleep(60)",
  ["mu:lock()"] = "local mu = go.mutex(); mu:lock(); mu:lock()",
  ["wg:wait()"] = "local wg = go.waitgroup(); wg:add(1); wg:wait()",
  ["l:accept()"] = "local l = assert(go.net.listen('127.0.0.1:0')); l:accept()",
  ["conn:read()"] = [[
    local l = assert(go.net.listen('127.0.0.1:0'))
    local c = assert(go.net.dial(l:addr()))
    c:read()]],
}

local function wchan(pid)
  local f = io.open(string.format("/proc/%d/task/%d/wchan", pid, pid))
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

-- The child's pid, once it printed it and its main thread sleeps on a
-- futex, as the kernel reports it; then SIGINT.
local function interrupt_when_asleep(p)
  local pid = tonumber(p:wait_for("^(%d+)\n"))
  local until_ = go.now() + 10 * H.SLOW
  while not (wchan(pid) or ""):find("futex", 1, true) do
    assert(go.now() < until_, "the main thread never slept: " .. p:describe())
    go.sleep(0.005)
  end
  os.execute("kill -INT " .. pid)
end

describe("SIGINT while the main thread waits", function()
  for name, block in pairs(cases) do
    it("interrupts " .. name .. " as lua5.4 does", function()
      local file = os.tmpname()
      local f = assert(io.open(file, "w"))
      f:write(prelude, "\n",
              "local function ready() io.write(pid, '\\n'); io.flush() end\n",
              "ready()\n", block, "\nprint('not interrupted')\n")
      f:close()
      local p = H.spawn(pending, { "lua5.4", file })
      local ok, err = pcall(function()
        interrupt_when_asleep(p)
        local status = p:wait(20 * H.SLOW)
        assert.are.equal(1, status, p:describe())
        assert.truthy(p:stderr():find("interrupted!", 1, true), p:describe())
        assert.falsy(p:stdout():find("not interrupted", 1, true), p:describe())
      end)
      p:kill()
      os.remove(file)
      assert(ok, err)
    end)
  end

  it("takes nothing from the channel it interrupts", function()
    -- The interrupted receive did nothing: the value sent afterwards
    -- reaches the next receive.
    local file = os.tmpname()
    local f = assert(io.open(file, "w"))
    f:write(prelude, [[
      local ch = go.chan()
      go(function()
        while not io.open(arg[1]) do go.sleep(0.005) end
        ch:send("after")
      end)
      io.write(pid, "\n"); io.flush()
      local ok, e = pcall(ch.recv, ch)
      print("first", ok, e); io.flush()
      print("second", ch:recv())
    ]])
    f:close()
    local flag = os.tmpname()
    os.remove(flag)
    local p = H.spawn(pending, { "lua5.4", file, flag })
    local ok, err = pcall(function()
      interrupt_when_asleep(p)
      p:wait_for("first\tfalse\t[^\n]*interrupted!")
      assert(io.open(flag, "w")):close()
      assert.are.equal(0, p:wait(20 * H.SLOW), p:describe())
      assert.truthy(p:stdout():find("second\tafter", 1, true), p:describe())
    end)
    p:kill()
    os.remove(file)
    os.remove(flag)
    assert(ok, err)
  end)
end)
