-- Time (API.md, "Time"): go.now, go.sleep, go.after, go.timer, go.ticker,
-- and select with go.after as a timeout; the deadlock rule with timers
-- pending (API.md, end of "Introspection").
--
-- Timing assertions are one-sided where the contract is: a sleep of s
-- seconds takes at least s.  The only upper bounds are generous ones
-- (s + H.LATE, 2 s scaled by GORO_TEST_SLOW) that catch a timer which
-- never fires or fires far too late, not a slow machine.
local go = require "goro"
local H = require "spec.helper"

if not go.sleep then
  describe("time", function()
    it("go.sleep and the timers", function() pending("go.sleep is not built yet") end)
  end)
  return
end

-- go.now() is float seconds; allow for the rounding of a subtraction.
local EPS = 1e-6

-- Elapsed time since t0, and the check that it is at least `s` and not
-- absurdly more.
local function took(t0, s, what)
  local dt = go.now() - t0
  assert.is_true(dt >= s - EPS, string.format("%s took %.6f s, less than %.6f s", what, dt, s))
  assert.is_true(dt < s + H.LATE, string.format("%s took %.3f s (for %.3f s)", what, dt, s))
  return dt
end

-- What select with default finds on `ch` right now: nil or the value.
local function poll(ch)
  local i, v = go.select{ ch, default = true }
  if i then return v end
  return nil
end

-- Run `code` in a child lua5.4 (H.run_child) that must print "ok" and exit 0.
local function child_ok(code)
  local status, out, err = H.run_child(pending, code, {}, { timeout = 20 })
  assert.equal(0, status, H.describe_child(status, out, err))
  assert.equal("ok\n", out)
end

describe("time", function()
  H.check_goroutines(before_each, after_each)

  describe("go.now()", function()
    it("is a float number of seconds that never goes backwards", function()
      local prev = go.now()
      assert.equal("float", math.type(prev))
      for _ = 1, 10000 do
        local t = go.now()
        assert.is_true(t >= prev)
        prev = t
      end
    end)

    it("agrees between goroutines and the main thread", function()
      local out = go.chan()
      local before = go.now()
      go(function() out:send(go.now()) end)
      local inside = out:recv()
      local after = go.now()
      assert.is_true(before <= inside and inside <= after)
    end)

    it("advances by about the time slept", function()
      local t0 = go.now()
      go.sleep(0.05)
      took(t0, 0.05, "go.sleep(0.05)")
    end)
  end)

  describe("go.sleep()", function()
    it("on the main thread parks for at least the time asked", function()
      for _, s in ipairs({ 0.001, 0.02, 0.05 }) do
        local t0 = go.now()
        go.sleep(s)
        took(t0, s, "go.sleep(" .. s .. ")")
      end
    end)

    it("in a goroutine parks for at least the time asked", function()
      local out = go.chan()
      go(function()
        local t0 = go.now()
        go.sleep(0.05)
        out:send(go.now() - t0)
      end)
      local dt = out:recv()
      assert.is_true(dt >= 0.05 - EPS, "slept " .. dt)
    end)

    it("of 0 or a negative duration returns at once", function()
      local t0 = go.now()
      go.sleep(0)
      go.sleep(-1)
      go.sleep(-math.huge)
      assert.is_true(go.now() - t0 < H.LATE)
      local out = go.chan()
      go(function() go.sleep(0); go.sleep(-5); out:send(true) end)
      assert.is_true(out:recv())
    end)

    it("raises for an argument that is not a number", function()
      assert.has_error(function() go.sleep("soon") end)
      assert.has_error(function() go.sleep({}) end)
      assert.has_error(function() go.sleep() end)
    end)

    it("blocks only the caller: others run meanwhile", function()
      -- One goroutine sleeps 1 s (scaled); a ping-pong of 100 rounds between
      -- the main thread and another goroutine finishes long before it wakes.
      local slept = go.chan(1)
      local woke = false
      go(function() go.sleep(H.SLOW); woke = true; slept:send(true) end)
      local ping, pong = go.chan(), go.chan()
      go(function() for v in ping:iter() do pong:send(v + 1) end end)
      for i = 1, 100 do
        ping:send(i)
        assert.equal(i + 1, (pong:recv()))
      end
      ping:close()
      assert.is_false(woke, "the ping-pong waited for the sleeper")
      assert.is_true(slept:recv())
    end)

    it("works at any depth: coroutines, pcall, C callbacks, metamethods", function()
      local function check(where, f)
        local t0 = go.now()
        f()
        took(t0, 0.01, where)
      end
      local function all()
        check("coroutine.wrap", function() coroutine.wrap(function() go.sleep(0.01) end)() end)
        check("nested coroutines", function()
          coroutine.wrap(function() coroutine.wrap(function() go.sleep(0.01) end)() end)()
        end)
        check("pcall", function() assert(pcall(go.sleep, 0.01)) end)
        check("table.sort comparator", function()
          local slept = false
          table.sort({ 2, 1 }, function(a, b)
            if not slept then slept = true; go.sleep(0.01) end
            return a < b
          end)
        end)
        check("string.gsub callback", function() ("x"):gsub("x", function() go.sleep(0.01) end) end)
        check("__index metamethod", function()
          local t = setmetatable({}, { __index = function() go.sleep(0.01); return 1 end })
          assert.equal(1, t.anything)
        end)
      end
      all()   -- on the main thread
      local done = go.chan()
      go(function() all(); done:send(true) end)
      assert.is_true(done:recv())
    end)

    it("many goroutines sleep in parallel, not one after the other", function()
      -- 50 sleeps of 0.5 s one after the other would take 25 s.
      for _, procs in ipairs(H.PROCS) do
        H.use_procs(procs)
        local wg = go.waitgroup()
        local t0 = go.now()
        wg:add(50)
        for _ = 1, 50 do go(function() go.sleep(0.5); wg:done() end) end
        wg:wait()
        took(t0, 0.5, procs .. " P: 50 parallel sleeps of 0.5 s")
      end
    end)

    it("goroutines sleeping different times wake no earlier than asked", function()
      local results = go.chan(20)
      local t0 = go.now()
      for i = 1, 20 do
        local s = (i % 5) * 0.02
        go(function() go.sleep(s); results:send({ s = s, dt = go.now() - t0 }) end)
      end
      for _ = 1, 20 do
        local r = results:recv()
        assert.is_true(r.dt >= r.s - EPS, string.format("sleep(%g) woke after %.6f s", r.s, r.dt))
      end
    end)

    for _, procs in ipairs(H.PROCS) do
      it("100,000 goroutines sleep at once and all wake, with " .. procs .. " P", function()
        -- "At once" is observed, not assumed from timing: each goroutine
        -- sleeps again, twice as long each round, while the main thread
        -- has not yet seen all of them asleep (go.status() counts the
        -- goroutines parked in go.sleep): however slow the machine, a
        -- round comes whose sleeps outlast the start and the wake-ups.
        H.use_procs(procs)
        -- Under TSan every park of a stackless goroutine destroys its
        -- fiber (an madvise of TSan's shadow stack): rounds of 10,000
        -- there take minutes, so fewer goroutines.
        local n = H.NO_PREEMPTION and H.scaled(20000) or H.scaled(100000)
        local woke = go.waitgroup()
        local seen_all, early, rounds = false, 0, 0
        woke:add(n)
        for i = 1, n do
          go(function()
            local round = 0
            repeat
              round = round + 1
              local s = 0.25 * 2^round + (i % 10) * 0.01
              local t0 = go.now()
              go.sleep(s)
              if go.now() - t0 < s - EPS then early = early + 1 end
              rounds = rounds + 1
            until seen_all
            woke:done()
          end)
        end
        local deadline = go.now() + 60 * H.SLOW
        local most = 0
        while not seen_all do
          local asleep = go.status().sleep or 0
          if asleep > most then most = asleep end
          seen_all = asleep == n
          if not seen_all then
            assert.is_true(go.now() < deadline, string.format(
              "never saw the %d goroutines asleep at once (at most %d)", n, most))
            go.sleep(0.05)   -- go.status() walks every goroutine
          end
        end
        woke:wait()
        assert.equal(0, early, "goroutines that woke early")
        assert.is_true(rounds >= n)
        go.wait()
        assert.equal(0, go.numgoroutine())
      end)
    end
  end)

  describe("go.after()", function()
    it("returns a channel that receives go.now() once, after the time", function()
      local t0 = go.now()
      local ch = go.after(0.05)
      local v, ok = ch:recv()
      local t1 = go.now()
      assert.is_true(ok)
      assert.equal("number", type(v))
      assert.is_true(v >= t0 + 0.05 - EPS, "value " .. (v - t0) .. " s after the call")
      assert.is_true(v <= t1 + EPS, "value from the future")
      took(t0, 0.05, "go.after(0.05):recv()")
    end)

    it("sends only once", function()
      local ch = go.after(0.01)
      ch:recv()
      go.sleep(0.1)
      assert.is_nil(poll(ch))
    end)

    it("keeps its value until received", function()
      local ch = go.after(0.01)
      go.sleep(0.1)
      local t0 = go.now()
      local v = ch:recv()
      assert.equal("number", type(v))
      assert.is_true(v <= t0)
    end)

    it("of 0 or a negative duration fires at once", function()
      local t0 = go.now()
      assert.equal("number", type((go.after(0):recv())))
      assert.equal("number", type((go.after(-3):recv())))
      assert.is_true(go.now() - t0 < H.LATE)
    end)

    it("raises for an argument that is not a number", function()
      assert.has_error(function() go.after("later") end)
      assert.has_error(function() go.after() end)
    end)

    it("is received from a goroutine as well as the main thread", function()
      local out = go.chan()
      go(function()
        local t0 = go.now()
        go.after(0.03):recv()
        out:send(go.now() - t0)
      end)
      assert.is_true(out:recv() >= 0.03 - EPS)
    end)

    it("many channels fire in any order, each no earlier than asked", function()
      local chans, due = {}, {}
      local t0 = go.now()
      for i = 1, 30 do
        due[i] = ((i * 7) % 30) * 0.005
        chans[i] = go.after(due[i])
      end
      for i = 1, 30 do
        local v = chans[i]:recv()
        assert.is_true(v >= t0 + due[i] - EPS, "timer " .. i)
      end
    end)

    it("unreceived, unreachable channels are collected without harm", function()
      local weak = setmetatable({}, { __mode = "v" })
      for i = 1, 1000 do
        local ch = go.after(i % 2 == 0 and 0 or 0.05)
        if i <= 10 then weak[i] = ch end
      end
      collectgarbage()
      collectgarbage()
      go.sleep(0.1)   -- the pending ones fire after their channels are gone
      collectgarbage()
      collectgarbage()
      for i = 1, 10 do assert.is_nil(weak[i], "go.after channel " .. i .. " not collected") end
      assert.equal("number", type((go.after(0.01):recv())))
    end)
  end)

  describe("select with go.after as a timeout", function()
    it("times out when nothing else is ready", function()
      local ch = go.chan()
      local t0 = go.now()
      local i, v, ok = go.select{ ch, go.after(0.05) }
      took(t0, 0.05, "the select")
      assert.equal(2, i)
      assert.equal("number", type(v))
      assert.is_true(ok)
    end)

    it("takes a ready case and does not wait for the timeout", function()
      local ch = go.chan(1)
      ch:send("now")
      local t0 = go.now()
      assert.same(H.pack(1, "now", true), H.pack(go.select{ ch, go.after(60) }))
      assert.is_true(go.now() - t0 < H.LATE)
    end)

    it("takes a case a goroutine makes ready before the timeout", function()
      local ch = go.chan()
      go(function() H.wait_state(0, "select"); ch:send("sent") end)
      assert.same(H.pack(1, "sent", true), H.pack(go.select{ ch, go.after(60) }))
    end)

    it("takes a send case a goroutine receives before the timeout", function()
      local ch, got = go.chan(), go.chan(1)
      go(function() got:send(ch:recv()) end)
      assert.equal(1, (go.select{ { ch, 7 }, go.after(60) }))
      assert.equal(7, (got:recv()))
    end)

    it("times out again and again in a loop", function()
      local ch = go.chan()
      local t0 = go.now()
      for _ = 1, 10 do
        assert.equal(2, (go.select{ ch, go.after(0.01) }))
      end
      took(t0, 0.1, "10 timeouts of 0.01 s")
    end)

    it("in a goroutine, a receive loop with a timeout ends when the sender stops", function()
      local ch, out = go.chan(), go.chan()
      go(function()
        local n = 0
        while true do
          local i = go.select{ ch, go.after(0.2) }
          if i == 2 then break end
          n = n + 1
        end
        out:send(n)
      end)
      for k = 1, 20 do ch:send(k) end
      assert.equal(20, (out:recv()))
    end)

    it("the first of two timeouts wins", function()
      local i = go.select{ go.after(30), go.after(0.02) }
      assert.equal(2, i)
    end)
  end)

  describe("go.timer()", function()
    it("t.c receives go.now() once, after the time", function()
      local t0 = go.now()
      local t = go.timer(0.05)
      local v, ok = t.c:recv()
      assert.is_true(ok)
      assert.is_true(v >= t0 + 0.05 - EPS)
      took(t0, 0.05, "go.timer(0.05)")
      go.sleep(0.1)
      assert.is_nil(poll(t.c))
    end)

    it("t.c is the same channel every time", function()
      local t = go.timer(60)
      assert.is_true(rawequal(t.c, t.c))
      t:stop()
    end)

    it("t:stop() of a pending timer returns true and nothing is sent", function()
      local t = go.timer(0.05)
      assert.is_true(t:stop())
      go.sleep(0.15)
      assert.is_nil(poll(t.c))
    end)

    it("t:stop() after the timer fired returns false", function()
      local t = go.timer(0.01)
      t.c:recv()
      assert.is_false(t:stop())
    end)

    it("t:stop() twice returns false the second time", function()
      local t = go.timer(60)
      assert.is_true(t:stop())
      assert.is_false(t:stop())
    end)

    it("t:reset() of a stopped timer arms it again", function()
      local t = go.timer(60)
      t:stop()
      local t0 = go.now()
      t:reset(0.05)
      local v = t.c:recv()
      assert.is_true(v >= t0 + 0.05 - EPS)
      took(t0, 0.05, "the reset timer")
    end)

    it("t:reset() of a pending timer moves its deadline later", function()
      local t = go.timer(0.1)
      local t0 = go.now()
      t:reset(0.3)
      local v = t.c:recv()
      assert.is_true(v >= t0 + 0.3 - EPS, "fired " .. (v - t0) .. " s after the reset")
      go.sleep(0.15)
      assert.is_nil(poll(t.c), "the first deadline fired too")
    end)

    it("t:reset() of a pending timer moves its deadline earlier", function()
      local t = go.timer(60)
      local t0 = go.now()
      t:reset(0.02)
      t.c:recv()
      took(t0, 0.02, "the reset timer")
      assert.is_false(t:stop())
    end)

    it("t:reset() of a fired and drained timer fires it again", function()
      local t = go.timer(0.01)
      t.c:recv()
      local t0 = go.now()
      t:reset(0.03)
      local v = t.c:recv()
      assert.is_true(v >= t0 + 0.03 - EPS)
    end)

    it("t:reset() returns whether the timer was pending, as Go's Reset", function()
      local t = go.timer(60)
      assert.is_true(t:reset(60))
      t:stop()
      assert.is_false(t:reset(0.01))
      t.c:recv()
      assert.is_false(t:reset(60))
      t:stop()
    end)

    it("a goroutine waiting on t.c of a stopped timer is woken by another case", function()
      local t, quit, out = go.timer(0.05), go.chan(), go.chan()
      go(function() out:send((go.select{ t.c, quit })) end)
      t:stop()
      go.sleep(0.1)
      quit:close()
      assert.equal(2, (out:recv()))
    end)

    it("timers are independent of each other", function()
      local a, b, c = go.timer(0.02), go.timer(0.04), go.timer(0.06)
      b:stop()
      local t0 = go.now()
      local fired = {}
      for _ = 1, 2 do
        local i = go.select{ a.c, b.c, c.c }
        fired[#fired + 1] = i
      end
      table.sort(fired)
      assert.same({ 1, 3 }, fired)
      assert.is_true(go.now() - t0 < 0.06 + H.LATE)
    end)

    it("raises for an argument that is not a number", function()
      assert.has_error(function() go.timer("x") end)
      local t = go.timer(60)
      assert.has_error(function() t:reset("x") end)
      t:stop()
    end)

    it("timer objects made before go.gomaxprocs() work after it", function()
      -- go.gomaxprocs(n) restarts the runtime; timers are not the
      -- scheduler's to forget (Go keeps them across runtime.GOMAXPROCS).
      child_ok([[
        local go = require "goro"
        local pending_t, stopped_t = go.timer(30), go.timer(30)
        stopped_t:stop()
        local dropped = go.after(30)
        go.gomaxprocs(go.gomaxprocs() == 1 and 2 or 1)
        assert(pending_t:stop() == true, "stop of a pending timer")
        stopped_t:reset(0.01)
        assert(type(stopped_t.c:recv()) == "number")
        dropped = nil
        collectgarbage()
        collectgarbage()
        assert(type(go.after(0.01):recv()) == "number")
        print("ok")
      ]])
    end)

    it("an unreachable timer is collected, pending or not", function()
      local weak = setmetatable({}, { __mode = "v" })
      weak[1] = go.timer(0.01)
      weak[2] = go.timer(60)
      weak[3] = go.timer(60)
      weak[3]:stop()
      collectgarbage()
      collectgarbage()
      go.sleep(0.05)
      collectgarbage()
      for i = 1, 3 do assert.is_nil(weak[i], "timer " .. i .. " not collected") end
    end)
  end)

  describe("go.ticker()", function()
    it("t.c receives every period, each tick no earlier than due", function()
      local period = 0.02
      local t0 = go.now()
      local t = go.ticker(period)
      local prev = t0
      for k = 1, 5 do
        local v, ok = t.c:recv()
        assert.is_true(ok)
        assert.is_true(v >= t0 + k * period - EPS,
                       string.format("tick %d at %.4f s, due at %.4f s", k, v - t0, k * period))
        assert.is_true(v > prev)
        prev = v
      end
      t:stop()
      took(t0, 5 * period, "5 ticks")
    end)

    it("drops ticks for a slow receiver: at most one is waiting", function()
      local t = go.ticker(0.05)
      go.sleep(0.5)   -- 10 periods
      local waiting = 0
      while poll(t.c) do waiting = waiting + 1 end
      -- one buffered, and perhaps one more that fell due while draining
      assert.is_true(waiting >= 1 and waiting <= 2, waiting .. " ticks waiting after 10 periods")
      -- and it keeps ticking
      assert.equal("number", type((t.c:recv())))
      t:stop()
    end)

    it("t:stop() stops the ticks", function()
      local t = go.ticker(0.01)
      t.c:recv()
      t:stop()
      poll(t.c)   -- a tick sent before stop returned
      go.sleep(0.1)
      assert.is_nil(poll(t.c))
    end)

    it("a stopped ticker's t.c does not wake a waiting select", function()
      local t = go.ticker(0.01)
      t:stop()
      poll(t.c)
      assert.equal(2, (go.select{ t.c, go.after(0.1) }))
    end)

    it("a goroutine counts ticks until told to quit", function()
      local quit, progress, out = go.chan(), go.chan(100), go.chan()
      go(function()
        local t = go.ticker(0.01)
        local n = 0
        while true do
          local i = go.select{ t.c, quit }
          if i == 2 then break end
          n = n + 1
          go.select{ { progress, n }, default = true }
        end
        t:stop()
        out:send(n)
      end)
      for k = 1, 3 do assert.equal(k, (progress:recv())) end
      quit:close()
      assert.is_true(out:recv() >= 3)
    end)

    it("raises for a non-positive period, as Go's NewTicker panics", function()
      assert.has_error(function() go.ticker(0) end)
      assert.has_error(function() go.ticker(-1) end)
      assert.has_error(function() go.ticker("x") end)
    end)

    it("a ticker made before go.gomaxprocs() keeps ticking after it", function()
      child_ok([[
        local go = require "goro"
        local t = go.ticker(0.01)
        t.c:recv()
        go.gomaxprocs(go.gomaxprocs() == 1 and 2 or 1)
        local i = go.select{ t.c, go.after(5) }
        assert(i == 1, "no tick after go.gomaxprocs()")
        t:stop()
        print("ok")
      ]])
    end)

    it("an unreachable running ticker is collected", function()
      local weak = setmetatable({}, { __mode = "v" })
      weak[1] = go.ticker(0.001)
      go.sleep(0.01)
      collectgarbage()
      collectgarbage()
      go.sleep(0.01)
      collectgarbage()
      assert.is_nil(weak[1])
    end)
  end)

  describe("timers across go.gomaxprocs()", function()
    it("pending timers fire after the restart with nothing else for the poller to do", function()
      -- After the restart, only receives: no sleep, no new timer, no
      -- select with a timeout (any of which used to wake the poller).
      child_ok([[
        local go = require "goro"
        local after, t, tk = go.after(0.05), go.timer(0.05), go.ticker(0.02)
        go(function() end)
        go.wait()
        go.gomaxprocs(go.gomaxprocs() == 1 and 2 or 1)
        assert(type(after:recv()) == "number", "go.after")
        assert(type(t.c:recv()) == "number", "go.timer")
        assert(type(tk.c:recv()) == "number", "go.ticker")
        assert(type(tk.c:recv()) == "number", "go.ticker, twice")
        tk:stop()
        print("ok")
      ]])
    end)

    it("a timer stopped, reset or made while the runtime is stopped works", function()
      child_ok([[
        local go = require "goro"
        local t, stopped = go.timer(0.05), go.timer(60)
        go(function() end)
        go.wait()
        go.gomaxprocs(go.gomaxprocs() == 1 and 2 or 1)
        -- the runtime starts again at its next use
        assert(stopped:stop() == true, "stop")
        assert(stopped:reset(0.01) == false, "reset")
        local a = go.after(0.01)
        assert(type(a:recv()) == "number", "go.after")
        assert(type(stopped.c:recv()) == "number", "the reset timer")
        assert(type(t.c:recv()) == "number", "the pending timer")
        print("ok")
      ]])
    end)
  end)

  describe("timer objects", function()
    local function strangers()
      return {
        { "nil", nil }, { "a number", 42 }, { "a string", "goro.timer" },
        { "a table", {} }, { "a function", print },
        { "a coroutine", coroutine.create(print) }, { "io.stdout", io.stdout },
        { "a channel", go.chan(1) }, { "a mutex", go.mutex() },
        { "a waitgroup", go.waitgroup() },
      }
    end

    it("every method raises for any self that is not a timer", function()
      local t = go.timer(60)
      t:stop()
      local mt = getmetatable(t)
      local fs = { stop = { mt.stop }, reset = { mt.reset, 1 }, __index = { mt.__index, "c" } }
      for _, name in ipairs(H.sorted_keys(fs)) do
        local f = fs[name]
        for _, s in ipairs(strangers()) do
          local ok, err = pcall(f[1], s[2], table.unpack(f, 2))
          assert.is_false(ok, name .. " accepted " .. s[1])
          assert.matches("goro.timer expected", err, 1, true, name .. " with " .. s[1])
        end
      end
    end)

    it("once its channel is finalised, stop returns false and reset raises", function()
      for _, make in ipairs{ go.timer, go.ticker } do
        local t = make(60)
        getmetatable(t.c).__gc(t.c)
        assert.is_false(t:stop())
        assert.is_false(t:stop())
        assert.error_matches(function() t:reset(1) end,
                             "goro: timer used after it was finalised", 1, true)
        assert.error_matches(function() t.c:recv() end,
                             "goro: channel used after it was finalised", 1, true)
      end
    end)

    it("stopped or reset by a finaliser at exit, after their channels were finalised", function()
      -- lua_close runs the finalisers in the reverse order of their
      -- objects: the table's, made first, runs last.
      local status, out, err = H.run_child(pending, [[
        local go = require "goro"
        local t, tk
        setmetatable({}, { __gc = function()
          print(t:stop(), tk:stop())
          print(pcall(t.reset, t, 1))
        end })
        t, tk = go.timer(10), go.ticker(10)
      ]], {}, { timeout = 20 })
      assert.equal(0, status, H.describe_child(status, out, err))
      assert.matches("^false\tfalse\nfalse\t[^\n]*goro: timer used after it was finalised\n$", out)
    end)
  end)

  describe("durations", function()
    it("NaN raises", function()
      local nan = 0 / 0
      local t = go.timer(60)
      for name, f in pairs{ sleep = go.sleep, after = go.after, timer = go.timer,
                            ticker = go.ticker, reset = function(d) t:reset(d) end } do
        assert.error_matches(function() f(nan) end, "not a number", 1, true, name)
      end
      assert.is_true(t:stop())   -- the failed reset left it pending
    end)

    it("huge ones are as good as never, and do not overflow", function()
      for _, d in ipairs{ math.huge, 1e300, 2^63, math.maxinteger, 9e9 + 1, 9e9 } do
        assert.is_nil(poll(go.after(d)), tostring(d))
        local t = go.timer(d)
        assert.is_nil(poll(t.c))
        assert.is_true(t:stop(), tostring(d))
        local tk = go.ticker(d)
        assert.is_nil(poll(tk.c))
        assert.is_true(tk:stop(), tostring(d))
        local r = go.timer(0)
        r.c:recv()
        assert.is_false(r:reset(d))
        assert.is_nil(poll(r.c))
        assert.is_true(r:stop())
      end
    end)

    it("zero, negative, -0.0 and -math.huge mean now", function()
      for _, d in ipairs{ 0, -0.0, -1, -math.huge, math.mininteger, -1e300 } do
        go.sleep(d)
        assert.equal("number", type(go.after(d):recv()))
        local t = go.timer(60)
        assert.is_true(t:reset(d))
        assert.equal("number", type(t.c:recv()))
      end
    end)

    it("a ticker's period must be positive; below a nanosecond counts as one", function()
      for _, d in ipairs{ 0, -0.0, -1, -math.huge, math.mininteger } do
        assert.error_matches(function() go.ticker(d) end, "non-positive interval", 1, true, tostring(d))
      end
      local tk = go.ticker(1e-12)
      assert.equal("number", type(tk.c:recv()))
      assert.equal("number", type(tk.c:recv()))
      assert.is_true(tk:stop())
    end)
  end)
end)

-- The deadlock rule knows about timers: a goroutine waiting for a timer is
-- not asleep for good.  Each case runs in a child lua5.4 (bounded by
-- `timeout 20`: a deadlock that is missed shows as status 124).
-- deadlock_spec.lua has two more: main on ch:recv() while the only
-- goroutine sleeps and then sends, and main on go.after(…):recv().
local fine = {
  ["main sleeps while goroutines are blocked for good"] = [[
    local gate = go.chan()
    for _ = 1, 5 do go(function() gate:recv() end) end
    go.sleep(0.2)
  ]],
  ["main on a select with a timeout and no goroutine"] = [[
    local i = go.select{ go.chan(), go.after(0.1) }
    assert(i == 2)
  ]],
  ["main on t.c of a timer that a goroutine resets"] = [[
    local t = go.timer(60)
    go(function() t:reset(0.05) end)
    t.c:recv()
  ]],
  ["main on go.wait() while goroutines sleep"] = [[
    for i = 1, 10 do go(function() go.sleep(i * 0.01) end) end
    go.wait()
  ]],
  ["main on wg:wait() while goroutines wait for tickers"] = [[
    local wg = go.waitgroup()
    for _ = 1, 3 do
      wg:add(1)
      go(function()
        local t = go.ticker(0.01)
        for _ = 1, 5 do t.c:recv() end
        t:stop()
        wg:done()
      end)
    end
    wg:wait()
  ]],
}

local deadlocks = {
  ["main on ch:recv() after every timer fired"] = [[
    go(function() go.sleep(0.05) end)
    go.after(0.05):recv()
    go.chan():recv()
  ]],
  ["main on ch:recv() after a go.after nobody receives fired"] = [[
    local unread = go.after(0.05)
    go.chan():recv()
  ]],
  ["main on t.c of a stopped timer"] = [[
    local t = go.timer(60)
    t:stop()
    t.c:recv()
  ]],
  ["goroutines block for good after sleeping"] = [[
    local gate = go.chan()
    for i = 1, 5 do go(function() go.sleep(i * 0.01); gate:recv() end) end
    go.wait()
  ]],
}

local prelude = "local go = require 'goro'\n"

H.deadlock_cases({ describe = describe, it = it, pending = pending },
                 "timers and the deadlock rule", prelude, fine, deadlocks, { timeout = 20 })
