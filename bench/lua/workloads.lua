-- bench/lua/workloads.lua — the workloads of bench/go/main.go, written once
-- against goro's Lua API (shared/API.md) and run by both Lua columns:
-- goro_bench.lua passes goro's module, coro_bench.lua its scheduler in plain
-- Lua, which offers the same calls (go.spawn, go.chan, go.select, go.wait,
-- go.waitgroup; ch:send, ch:recv, ch:close, ch:iter).  So both columns run
-- the same program, as bench.c and main.go do: same N, shape, self-checks.
--
-- As in main.go, the main thread starts the workload's goroutines (W1 and
-- W5: one spawner goroutine starts the N) and then blocks in go.wait() (W5:
-- in wg:wait()); goroutines run while it blocks, since the main thread holds
-- the Lua state while it runs Lua.  Times are wall time / N, the spawning and
-- waiting included (harness.lua has the clock).

local H = require "harness"

-- W1: spawn n goroutines from one goroutine, wait for all to finish.
local function w1(go, n)
  local spawn = go.spawn
  local done = 0
  local function task() done = done + 1 end
  local t = H.start()
  spawn(function()
    for _ = 1, n do spawn(task) end
  end)
  go.wait()
  local r = H.per_op(t, n)
  if done ~= n then H.fail("W1: %d of %d finished", done, n) end
  return r, "ns/task"
end

-- W2: ping-pong over two unbuffered channels, n round trips.
local function w2(go, n)
  local spawn = go.spawn
  local ping, pong = go.chan(), go.chan()
  local last
  local t = H.start()
  spawn(function()   -- pinger
    for i = 0, n - 1 do
      ping:send(i)
      last = pong:recv()
    end
  end)
  spawn(function()   -- ponger
    for _ = 1, n do
      local v = ping:recv()
      pong:send(v + 1)
    end
  end)
  go.wait()
  local r = H.per_op(t, n)
  if last ~= n then H.fail("W2: last reply %s, want %d", tostring(last), n) end
  return r, "ns/roundtrip"
end

-- W3: one producer, one consumer, buffered channel of cap 1024, n integers.
local function w3(go, n)
  local spawn = go.spawn
  local c = go.chan(1024)
  local sum, got = 0, 0
  local t = H.start()
  spawn(function()
    for i = 0, n - 1 do c:send(i) end
    c:close()
  end)
  spawn(function()
    for v in c:iter() do   -- Go: for v := range c
      sum = sum + v
      got = got + 1
    end
  end)
  go.wait()
  local r = H.per_op(t, n)
  if got ~= n or sum ~= n * (n - 1) // 2 then
    H.fail("W3: got %d items, sum %d", got, sum)
  end
  return r, "ns/item"
end

-- W4: four producers, each on its own unbuffered channel, n/4 items each;
-- one consumer selects over the four until all are closed.
local function w4(go, n)
  local spawn = go.spawn
  local np = 4
  local per = n // np
  n = per * np
  local chs = {}
  for i = 1, np do chs[i] = go.chan() end
  local sum, got = 0, 0
  local function producer(c)
    for i = 0, per - 1 do c:send(i) end
    c:close()
  end
  local t = H.start()
  for i = 1, np do spawn(producer, chs[i]) end
  spawn(function()
    local select = go.select
    local cases = { chs[1], chs[2], chs[3], chs[4] }
    local open = np
    while open > 0 do
      local i, v, ok = select(cases)
      if ok then
        sum = sum + v
        got = got + 1
      else
        cases[i] = false   -- Go: c = nil
        open = open - 1
      end
    end
  end)
  go.wait()
  local r = H.per_op(t, n)
  if got ~= n or sum ~= np * (per * (per - 1) // 2) then
    H.fail("W4: got %d items, sum %d", got, sum)
  end
  return r, "ns/item"
end

-- W5: n goroutines blocked on one channel receive; bytes of RSS each.
-- VmRSS, as the other columns, each reading after a full collection.
local function w5(go, n)
  local spawn = go.spawn
  local gate = go.chan()
  local started = go.waitgroup()
  local woke = 0
  local function task()
    started:done()
    gate:recv()
    woke = woke + 1
  end
  -- Let the runtime start its threads before "before", as bench.c does.
  spawn(function() end)
  go.wait()
  collectgarbage()
  local before = H.vmrss()
  started:add(n)
  spawn(function()
    for _ = 1, n do spawn(task) end
  end)
  -- A goroutine runs on from started:done() until gate:recv() parks it
  -- (goro: it holds the Lua state's token; coro: nothing preempts it), so
  -- once the main thread runs again all n are parked.
  started:wait()
  collectgarbage()
  local after = H.vmrss()
  gate:close()
  go.wait()
  if woke ~= n then H.fail("W5: %d of %d woke", woke, n) end
  return (after - before) / n, "bytes/task"
end

-- W7: thread-ring (the Benchmarks Game): 503 goroutines in a ring, each
-- receiving on its own unbuffered channel and passing token-1 on; n hops.
-- The one that receives 0 closes every channel so that all finish.
local function w7(go, n)
  local spawn = go.spawn
  local ring = 503
  local chs = {}
  for i = 0, ring - 1 do chs[i] = go.chan() end
  local winner = -1
  local function task(id, inc, out)
    while true do
      local tok, ok = inc:recv()
      if not ok then return end
      if tok == 0 then
        winner = id + 1
        for j = 0, ring - 1 do chs[j]:close() end
        return
      end
      out:send(tok - 1)
    end
  end
  local t = H.start()
  for i = 0, ring - 1 do spawn(task, i, chs[i], chs[(i + 1) % ring]) end
  spawn(function() chs[0]:send(n) end)   -- starter
  go.wait()
  local r = H.per_op(t, n)
  if winner ~= n % ring + 1 then
    H.fail("W7: winner %d, want %d", winner, n % ring + 1)
  end
  return r, "ns/hop"
end

return {
  { name = "W1", n = 1000000, run = w1 },
  { name = "W2", n = 1000000, run = w2 },
  { name = "W3", n = 10000000, run = w3 },
  { name = "W4", n = 4000000, run = w4 },
  { name = "W5", n = 1000000, run = w5 },
  { name = "W7", n = 10000000, run = w7 },
}
