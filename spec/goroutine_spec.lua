-- Goroutines: go / go.spawn, go.id, go.yield, go.numgoroutine,
-- go.gomaxprocs, go.wait, go.stats (API.md, "Goroutines", "Introspection").
local go = require "goro"
local H = require "spec.helper"

describe("goroutines", function()
  H.check_goroutines(before_each, after_each)

  it("go(fn, ...) runs fn with its arguments and returns an integer id", function()
    local out = go.chan(1)
    local id = go(function(...) out:send(H.pack(...)) end, 1, nil, "three")
    assert.equal("integer", math.type(id))
    assert.is_true(id > 0)
    local args = out:recv()
    assert.same({ n = 3, 1, nil, "three" }, args)
  end)

  it("go.spawn is the same as go", function()
    local out = go.chan(1)
    local id = go.spawn(function(a, b) out:send(a + b) end, 40, 2)
    assert.equal("integer", math.type(id))
    assert.equal(42, (out:recv()))
  end)

  it("go.id() is 0 on the main thread and the spawned id inside the goroutine", function()
    assert.equal(0, go.id())
    local out = go.chan()
    local id = go(function() out:send(go.id()) end)
    assert.equal(id, (out:recv()))
    assert.equal(0, go.id())
  end)

  it("go.id() inside a coroutine of a goroutine is the goroutine's id", function()
    local out = go.chan()
    local id = go(function()
      local inner = coroutine.wrap(function() coroutine.yield(go.id()) end)
      out:send(inner())
    end)
    assert.equal(id, (out:recv()))
  end)

  it("ids are distinct, also across go.wait() and a change of go.gomaxprocs", function()
    local seen = {}
    local function spawn_some(n)
      for _ = 1, n do
        local id = go(function() end)
        assert.is_nil(seen[id], "id " .. id .. " reused")
        seen[id] = true
      end
      go.wait()
    end
    spawn_some(50)
    local prev = go.gomaxprocs()
    go.gomaxprocs(prev == 1 and 2 or 1)   -- restarts the runtime
    spawn_some(50)
    go.gomaxprocs(prev)
    spawn_some(50)
  end)

  it("ids start at 1 in a fresh process", function()
    local status, out, err = H.run_child(pending, [[
      local go = require "goro"
      print(go(function() end), go(function() end))
      go.wait()
    ]])
    assert.equal(0, status, H.describe_child(status, out, err))
    assert.equal("1\t2\n", out)
  end)

  it("goroutines can spawn goroutines, and go.wait() waits for all of them", function()
    local count = 0
    local function tree(depth)
      count = count + 1
      if depth > 0 then
        for _ = 1, 3 do go(tree, depth - 1) end
      end
    end
    go(tree, 5)
    go.wait()
    -- 1 + 3 + 9 + 27 + 81 + 243
    assert.equal(364, count)
    assert.equal(0, go.numgoroutine())
  end)

  it("go.wait() returns at once when no goroutine is alive", function()
    go.wait()
    go.wait()
    assert.equal(0, go.numgoroutine())
  end)

  it("goroutines share upvalues and tables by reference", function()
    local t = {}
    local wg = go.waitgroup()
    for i = 1, 10 do
      wg:add(1)
      go(function() t[i] = i * i; wg:done() end)
    end
    wg:wait()
    for i = 1, 10 do assert.equal(i * i, t[i]) end
  end)

  it("the values a goroutine returns are dropped without error", function()
    local errs = H.trap_errors()
    go(function() return 1, 2, 3 end)
    go.wait()
    assert.same({}, errs)
  end)

  for _, procs in ipairs(H.PROCS) do
    describe("with " .. procs .. " P", function()
      before_each(function() H.use_procs(procs) end)

      it("go.gomaxprocs() reports the number of Ps and go.stats() agrees", function()
        assert.equal(procs, go.gomaxprocs())
        local out = go.chan()
        go(function() out:send(go.stats().procs) end)
        assert.equal(procs, (out:recv()))
        assert.equal(procs, go.stats().procs)
      end)

      it("go.numgoroutine() counts live goroutines, not the main thread", function()
        assert.equal(0, go.numgoroutine())
        local gate = go.chan()
        local wg = go.waitgroup()
        wg:add(5)
        for _ = 1, 5 do
          go(function() wg:done(); gate:recv() end)
        end
        wg:wait()   -- all five started; each is blocked on gate or about to be
        assert.equal(5, go.numgoroutine())
        assert.equal(5, go.stats().goroutines)
        gate:close()
        go.wait()
        assert.equal(0, go.numgoroutine())
      end)

      it("go.yield() lets another goroutine run", function()
        -- Without a working yield, the loop would run on until preempted
        -- (~10 ms, far more than 10000 iterations).
        local flag, spins = false, 0
        local out = go.chan(1)
        go(function()
          while not flag and spins < 10000 do
            go.yield()
            spins = spins + 1
          end
          out:send(flag)
        end)
        go(function() flag = true end)
        assert.is_true(out:recv())
        assert.is_true(spins < 10000)
      end)

      it("go.yield() on the main thread with nothing to run returns", function()
        go.wait()
        go.yield()
        go.yield()
        assert.equal(0, go.id())
      end)

      it("a token goes round a ring of 100 goroutines 20 times", function()
        local n, rounds = 100, 20
        local first = go.chan()
        local prev = first
        for _ = 1, n - 1 do
          local inc, out = prev, go.chan()
          go(function()
            for v in inc:iter() do out:send(v + 1) end
            out:close()
          end)
          prev = out
        end
        local last = prev
        local v = 0
        go(function()
          for _ = 1, rounds do
            first:send(v)
            v = last:recv()
          end
          first:close()
        end)
        go.wait()
        assert.equal(rounds * (n - 1), v)
      end)

      it("go.stats() has the documented fields, and switches grows", function()
        local fields = { "goroutines", "threads", "procs", "idleprocs", "spinning",
                         "runqueue", "switches", "steals", "preemptions", "handoffs" }
        local before = go.stats()
        for _, f in ipairs(fields) do
          assert.equal("number", type(before[f]), "field " .. f)
        end
        local a, b = go.chan(), go.chan()
        go(function() for i = 1, 100 do a:send(i); b:recv() end end)
        go(function() for _ = 1, 100 do b:send(a:recv()) end end)
        go.wait()
        local after = go.stats()
        assert.is_true(after.switches > before.switches)
        assert.is_true(after.threads >= 1)
        assert.equal(procs, after.procs)
      end)

      it("coroutines inside a goroutine work as usual", function()
        local out = go.chan(1)
        go(function()
          local gen = coroutine.wrap(function()
            for i = 1, 3 do coroutine.yield(i) end
          end)
          local co = coroutine.create(function(x)
            local y = coroutine.yield(x + 1)
            return y * 2
          end)
          local r = {}
          for v in gen do r[#r + 1] = v end
          local _, a = coroutine.resume(co, 1)
          local _, b = coroutine.resume(co, 10)
          r[#r + 1] = a
          r[#r + 1] = b
          r[#r + 1] = coroutine.status(co)
          out:send(r)
        end)
        assert.same({ 1, 2, 3, 2, 20, "dead" }, (out:recv()))
      end)
    end)
  end

  it("env GORO_MAXPROCS sets the default number of Ps", function()
    local status, out, err = H.run_child(pending, [[
      local go = require "goro"
      print(go.gomaxprocs())
    ]], { GORO_MAXPROCS = "3" })
    assert.equal(0, status, H.describe_child(status, out, err))
    assert.equal("3\n", out)
  end)
end)
