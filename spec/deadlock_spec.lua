-- The deadlock rule (API.md, end of "Introspection"): when the main thread
-- and every goroutine are blocked with nothing pending, the process fails
-- fast with "all goroutines are asleep - deadlock!" and status 2.
-- Every case runs in a child lua5.4 (bounded by `timeout 60`: a missed
-- deadlock shows as status 124), with 1 and with 2 Ps.
local H = require "spec.helper"

local DEADLOCK = "all goroutines are asleep - deadlock!"

local prelude = [[
local go = require "goro"
-- Wait until goroutine id (0: main; or each of a list) is blocked in
-- state, as go.status reports it; a bounded wait (the go.sleep polls keep a
-- timer pending, so no deadlock is reported meanwhile).
local function wait_state(id, state)
  if type(id) == "table" then
    for _, each in ipairs(id) do wait_state(each, state) end
    return
  end
  local deadline = go.now() + 10
  while go.status(id) ~= state do
    if go.now() > deadline then
      error(("goroutine %d is %s, not %s"):format(id, tostring(go.status(id)), state))
    end
    go.sleep(0.001)
  end
end
]]

local deadlocks = {
  ["main on ch:recv() with no goroutine"] = [[
    go.chan():recv()
  ]],
  ["main on ch:recv() while goroutines are blocked"] = [[
    local a, b = go.chan(), go.chan()
    local ids = {}
    for i = 1, 3 do ids[i] = go(function() a:recv() end) end
    local sender = go(function() b:send(1) end)   -- b is not what main waits for
    wait_state(ids, "chan receive")
    wait_state(sender, "chan send")
    go.chan():recv()
  ]],
  ["main on an unbuffered ch:send() nobody receives"] = [[
    local ch = go.chan()
    go(function() go.chan():recv() end)
    ch:send(1)
  ]],
  ["main on a full buffered channel"] = [[
    local ch = go.chan(2)
    ch:send(1); ch:send(2); ch:send(3)
  ]],
  ["main on wg:wait() whose goroutines are blocked"] = [[
    local wg, gate = go.waitgroup(), go.chan()
    wg:add(3)
    for _ = 1, 3 do go(function() gate:recv(); wg:done() end) end
    wg:wait()
  ]],
  ["main on wg:wait() with no goroutine"] = [[
    local wg = go.waitgroup()
    wg:add(1)
    wg:wait()
  ]],
  ["main on go.wait() while goroutines are blocked"] = [[
    local gate = go.chan()
    for _ = 1, 5 do go(function() gate:recv() end) end
    go(function() gate:send(1) end)   -- one of them finishes
    go.wait()
  ]],
  ["main on a select while goroutines are blocked"] = [[
    local a, b, c, d, e = go.chan(), go.chan(), go.chan(), go.chan(), go.chan()
    go(function() c:recv() end)
    go(function() go.select{ d, { e, 1 } } end)
    go.select{ a, { b, "x" }, false }
  ]],
  ["after a goroutine was woken by a timer (the poller's thread readied it)"] = [[
    go(function() go.after(0.01):recv(); go.chan():recv() end)
    go.chan():recv()
  ]],
  ["after every sleep has ended"] = [[
    go(function() go.sleep(0.01) end)
    go.sleep(0.02)
    go.chan():recv()
  ]],
  ["main on go.select{} with no case"] = [[
    go(function() end)
    go.select{}
  ]],
  ["main on mu:lock() held by a blocked goroutine"] = [[
    local mu, locked = go.mutex(), go.chan()
    go(function() mu:lock(); locked:send(true); go.chan():recv() end)
    locked:recv()
    mu:lock()
  ]],
  ["main on mu:lock() it holds itself"] = [[
    local mu = go.mutex()
    mu:lock()
    mu:lock()
  ]],
  ["after a long ping-pong, everyone blocks"] = [[
    local ping, pong = go.chan(), go.chan()
    go(function() for i = 1, 1000 do ping:send(i) end; ping:recv() end)
    go(function() for _ = 1, 1000 do pong:send(ping:recv()) end; pong:recv() end)
    for _ = 1, 1000 do pong:recv() end
    go.chan():recv()
  ]],
  ["goroutines blocked inside coroutines and C callbacks"] = [[
    local gate = go.chan()
    local a = go(function() coroutine.wrap(function() gate:recv() end)() end)
    local b = go(function() table.sort({ 1, 2 }, function(x, y) gate:recv(); return x < y end) end)
    local c = go(function() ("x"):gsub("x", function() go.select{ gate } end) end)
    wait_state({ a, b }, "chan receive")
    wait_state(c, "select")
    go.wait()
  ]],
  ["main blocked inside a table.sort comparator"] = [[
    local gate = go.chan()
    go(function() gate:recv() end)
    table.sort({ 1, 2 }, function(x, y) gate:recv(); gate:recv(); return x < y end)
  ]],
}

local fine = {
  ["main waits on a channel a sleeping goroutine will send on"] = [[
    local ch = go.chan()
    go(function() go.sleep(0.05); ch:send(1) end)
    assert(ch:recv() == 1)
  ]],
  ["main waits on a go.after channel"] = [[
    go.after(0.05):recv()
  ]],
  ["main on ch:recv() while a goroutine yields before it sends"] = [[
    local ch = go.chan()
    go(function() for _ = 1, 1000 do go.yield() end; ch:send(1) end)
    assert(ch:recv() == 1)
  ]],
  ["main on ch:recv() while a goroutine computes before it sends"] = [[
    local ch = go.chan()
    go(function() local x = 0; for i = 1, 3e7 do x = x + i end; ch:send(x) end)
    assert(ch:recv() > 0)
  ]],
  ["go.wait() while a chain of goroutines hands a value on"] = [[
    local prev = go.chan()
    local first = prev
    for _ = 1, 100 do
      local inc, out = prev, go.chan()
      go(function() out:send(inc:recv() + 1) end)
      prev = out
    end
    local last = prev
    go(function() assert(last:recv() == 100) end)
    go(function() first:send(0) end)
    go.wait()
  ]],
  ["main ends while goroutines are still blocked"] = [[
    local gate = go.chan()
    local ids = {}
    for i = 1, 10 do ids[i] = go(function() gate:recv() end) end
    wait_state(ids, "chan receive")
  ]],
  ["wg:wait() while goroutines queue on a mutex"] = [[
    local mu, wg = go.mutex(), go.waitgroup()
    mu:lock()
    for _ = 1, 5 do
      wg:add(1)
      go(function() mu:lock(); mu:unlock(); wg:done() end)
    end
    go(function() wait_state(0, "semacquire"); mu:unlock() end)
    wg:wait()
  ]],
  ["main on wg:wait() while other goroutines are blocked for good"] = [[
    local gate, wg = go.chan(), go.waitgroup()
    for _ = 1, 5 do go(function() gate:recv() end) end
    wg:add(1)
    go(function() wait_state(0, "semacquire"); wg:done() end)
    wg:wait()
  ]],
  ["a goroutine blocked in a comparator is woken by another"] = [[
    local gate = go.chan(100)   -- more than the comparator calls
    local sorter = go(function() table.sort({ 1, 2, 3 }, function(x, y) gate:recv(); return x < y end) end)
    go(function() wait_state(sorter, "chan receive"); for i = 1, 100 do gate:send(i) end end)
    go.wait()
  ]],
  ["a select that waits for a goroutine's close"] = [[
    local a, b = go.chan(), go.chan()
    go(function() wait_state(0, "select"); b:close() end)
    local i, _, ok = go.select{ a, b }
    assert(i == 2 and ok == false)
  ]],
}

-- in a stable order, so that failures read the same from run to run
local function sorted(t)
  local names = {}
  for name in pairs(t) do names[#names + 1] = name end
  table.sort(names)
  return names
end

for _, procs in ipairs(H.PROCS) do
  local env = { GORO_MAXPROCS = tostring(procs) }

  describe("deadlock with " .. procs .. " P is reported:", function()
    for _, name in ipairs(sorted(deadlocks)) do
      it(name, function()
        local status, out, err = H.run_child(pending, prelude .. deadlocks[name] .. "\nprint('not reached')\n", env)
        assert.equal(2, status, H.describe_child(status, out, err))
        assert.matches(DEADLOCK, err, 1, true)
        assert.equal("", out)
      end)
    end
  end)

  describe("no deadlock with " .. procs .. " P:", function()
    for _, name in ipairs(sorted(fine)) do
      it(name, function()
        local status, out, err = H.run_child(pending, prelude .. fine[name] .. "\nprint('ok')\n", env)
        assert.equal(0, status, H.describe_child(status, out, err))
        assert.equal("ok\n", out)
        assert.not_matches("deadlock", err, 1, true)
      end)
    end
  end)
end
