-- Preemption (API.md, "Goroutines"): Lua code that runs for more than
-- ~10 ms without blocking is interrupted so that others run, in a goroutine
-- and on the main thread.
--
-- A busy loop here is bounded: it stops either when it sees that the
-- others have run (what preemption makes happen within tens of ms) or
-- after LIMIT iterations (seconds of work).  The test asserts the former,
-- so it fails, rather than hangs, without preemption.  Loops that never
-- end (`while true do end`) run in a child process under `timeout 60`.
local go = require "goro"
local H = require "spec.helper"

local LIMIT = 1e8   -- a few seconds of spin_until on this machine's class of CPU

-- Where preemption cannot work (H.NO_PREEMPTION), say so instead of failing.
local function needs_preemption()
  if H.NO_PREEMPTION then pending(H.NO_PREEMPTION) end
end

-- Busy-loop until cond() holds or LIMIT iterations have passed; returns
-- whether cond() came to hold.
local function spin_until(cond)
  local i = 0
  while not cond() and i < LIMIT do i = i + 1 end
  return cond()
end

-- Where a busy loop runs: each calls f() there.  The running Lua thread
-- is then the goroutine's own, a coroutine, or one under a C call.
local places = {
  { "at the top level", function(f) f() end },
  { "inside a coroutine", function(f) coroutine.wrap(f)() end },
  { "inside a table.sort comparator", function(f)
    local called = false
    table.sort({ 2, 1 }, function(a, b)
      if not called then called = true; f() end
      return a < b
    end)
  end },
}

describe("preemption", function()
  H.check_goroutines(before_each, after_each)

  for _, procs in ipairs(H.PROCS) do
    describe("with " .. procs .. " P", function()
      before_each(function() H.use_procs(procs) end)

      for _, place in ipairs(places) do
        local where, run_in = place[1], place[2]

        it("a goroutine's busy loop " .. where .. " does not stop the others", function()
          needs_preemption()
          local others_done, saw = false, nil
          local wg = go.waitgroup()
          wg:add(2)
          go(function()
            run_in(function() saw = spin_until(function() return others_done end) end)
            wg:done()
          end)
          go(function()
            -- a little channel work of its own
            local ch = go.chan()
            go(function() for k = 1, 10 do ch:send(k) end end)
            for _ = 1, 10 do ch:recv() end
            others_done = true
            wg:done()
          end)
          wg:wait()
          assert.is_true(saw)
        end)

        it("the main thread's busy loop " .. where .. " lets waiting goroutines run", function()
          needs_preemption()
          local before = go.stats().preemptions
          local ran, saw = false, nil
          go(function() ran = true end)
          run_in(function() saw = spin_until(function() return ran end) end)
          assert.is_true(saw)
          assert.is_true(go.stats().preemptions > before,
                         "preemptions " .. before .. " -> " .. go.stats().preemptions)
        end)
      end

      it("go.stats().preemptions grows while goroutines spin", function()
        needs_preemption()
        -- Each spinner runs until it has seen every spinner start, which
        -- takes a preemption of each but the last.
        local before = go.stats().preemptions
        local n = 3
        local started, early = {}, {}
        local function all_started()
          for k = 1, n do if not started[k] then return false end end
          return true
        end
        local wg = go.waitgroup()
        wg:add(n)
        for s = 1, n do
          go(function()
            started[s] = true
            early[s] = spin_until(all_started)
            wg:done()
          end)
        end
        wg:wait()
        for s = 1, n do assert.is_true(early[s], "spinner " .. s .. " ran out its loop") end
        assert.is_true(go.stats().preemptions > before)
      end)

      it("a spinning goroutine does not keep a ping-pong from finishing", function()
        needs_preemption()
        local stop = false
        local spins_done = go.chan(1)
        go(function()
          spins_done:send(spin_until(function() return stop end))
        end)
        local ping, pong = go.chan(), go.chan()
        go(function() for v in ping:iter() do pong:send(v) end end)
        for k = 1, 20 do
          ping:send(k)
          assert.equal(k, (pong:recv()))
        end
        ping:close()
        stop = true
        assert.is_true(spins_done:recv())
      end)

      it("`while true do end` in a goroutine does not stop the others (child)", function()
        local status, out, err = H.run_child(pending, [[
          local go = require "goro"
          local p0 = go.stats().preemptions
          go(function() while true do end end)
          go(function() while true do end end)
          local ping, pong = go.chan(), go.chan()
          go(function() for v in ping:iter() do pong:send(v) end end)
          for k = 1, 20 do ping:send(k); assert(pong:recv() == k) end
          print("ok", go.stats().preemptions > p0)
          io.stdout:flush()
          os.exit(0)   -- the spinners never end: do not wait for them
        ]], { GORO_MAXPROCS = tostring(procs) })
        assert.equal(0, status, H.describe_child(status, out, err))
        assert.equal("ok\ttrue\n", out)
      end)

      it("`while true do end` on the main thread lets goroutines run (child)", function()
        local status, out, err = H.run_child(pending, [[
          local go = require "goro"
          go(function()
            local ch = go.chan()
            go(function() ch:send("from a goroutine") end)
            print((ch:recv()))
            io.stdout:flush()
            os.exit(0)
          end)
          while true do end
        ]], { GORO_MAXPROCS = tostring(procs) })
        assert.equal(0, status, H.describe_child(status, out, err))
        assert.equal("from a goroutine\n", out)
      end)
    end)
  end
end)
