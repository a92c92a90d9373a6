-- go.waitgroup and go.mutex (API.md, "Synchronisation").
local go = require "goro"
local H = require "spec.helper"

describe("go.waitgroup", function()
  H.check_goroutines(before_each, after_each)

  it("wait returns at once on a zero counter", function()
    local wg = go.waitgroup()
    wg:wait()
    wg:add(0)
    wg:wait()
  end)

  it("wait blocks until every goroutine is done", function()
    local wg = go.waitgroup()
    local done = 0
    for _ = 1, 10 do
      wg:add(1)
      go(function()
        H.wait_state(0, "semacquire")   -- so that the main thread really waits
        done = done + 1
        wg:done()
      end)
    end
    wg:wait()
    assert.equal(10, done)
  end)

  it("add(n) counts n", function()
    local wg = go.waitgroup()
    local done = 0
    wg:add(5)
    for _ = 1, 5 do
      go(function() done = done + 1; wg:done() end)
    end
    wg:wait()
    assert.equal(5, done)
  end)

  it("wait does not return while the counter is above zero", function()
    local wg, report = go.waitgroup(), go.chan()
    local released = false
    wg:add(2)
    local waiter = go(function() wg:wait(); released = true end)
    wg:done()
    go(function() H.wait_state(waiter, "semacquire"); report:send(released) end)
    assert.is_false(report:recv())
    wg:done()
    go.wait()
    assert.is_true(released)
  end)

  it("wakes every waiter", function()
    local wg, woke = go.waitgroup(), go.chan(5)
    wg:add(1)
    local waiters = {}
    for i = 1, 5 do
      waiters[i] = go(function() wg:wait(); woke:send(i) end)
    end
    H.wait_state(waiters, "semacquire")
    wg:done()
    local got = {}
    for _ = 1, 5 do got[woke:recv()] = true end
    assert.same({ true, true, true, true, true }, got)
  end)

  it("can be reused after reaching zero", function()
    local wg = go.waitgroup()
    for round = 1, 3 do
      local done = 0
      wg:add(4)
      for _ = 1, 4 do go(function() H.wait_state(0, "semacquire"); done = done + 1; wg:done() end) end
      wg:wait()
      assert.equal(4, done, "round " .. round)
    end
  end)

  it("a goroutine can add for the goroutines it starts", function()
    local wg = go.waitgroup()
    local leaves = 0
    local function tree(depth)
      if depth > 0 then
        wg:add(2)
        go(tree, depth - 1)
        go(tree, depth - 1)
      else
        leaves = leaves + 1
      end
      wg:done()
    end
    wg:add(1)
    go(tree, 6)
    wg:wait()
    assert.equal(64, leaves)
  end)

  it("done on a zero counter is an error", function()
    local wg = go.waitgroup()
    assert.has_error(function() wg:done() end)
  end)

  it("a negative add is an error", function()
    local wg = go.waitgroup()
    wg:add(1)
    assert.has_error(function() wg:add(-2) end)
    wg:done()   -- the counter is still 1: it goes back to zero
    wg:wait()
  end)
end)

describe("go.mutex", function()
  H.check_goroutines(before_each, after_each)

  it("lock and unlock on an uncontended mutex", function()
    local mu = go.mutex()
    mu:lock()
    mu:unlock()
    mu:lock()
    mu:unlock()
  end)

  it("trylock returns true when free and false when held", function()
    local mu = go.mutex()
    assert.is_true(mu:trylock())
    assert.is_false(mu:trylock())
    mu:unlock()
    assert.is_true(mu:trylock())
    mu:unlock()
    mu:lock()
    assert.is_false(mu:trylock())
    mu:unlock()
  end)

  it("unlocking an unlocked mutex is an error", function()
    local mu = go.mutex()
    assert.has_error(function() mu:unlock() end)
    mu:lock()
    mu:unlock()
    assert.has_error(function() mu:unlock() end)
  end)

  it("lock blocks the main thread until the holder unlocks", function()
    local mu, locked = go.mutex(), go.chan()
    local released = false
    go(function()
      mu:lock()
      locked:send(true)
      H.wait_state(0, "semacquire")
      released = true
      mu:unlock()
    end)
    locked:recv()
    mu:lock()
    assert.is_true(released)
    mu:unlock()
  end)

  for _, procs in ipairs(H.PROCS) do
    describe("with " .. procs .. " P", function()
      before_each(function() H.use_procs(procs) end)

      it("excludes: no update is lost though holders yield inside", function()
        -- Without mutual exclusion the yield between read and write would
        -- lose updates, and `inside` would be seen set.
        local mu = go.mutex()
        local counter, inside, overlaps = 0, false, 0
        local n, each = 10, 50
        for _ = 1, n do
          go(function()
            for _ = 1, each do
              mu:lock()
              if inside then overlaps = overlaps + 1 end
              inside = true
              local v = counter
              go.yield()
              counter = v + 1
              inside = false
              mu:unlock()
            end
          end)
        end
        go.wait()
        assert.equal(0, overlaps)
        assert.equal(n * each, counter)
      end)

      it("the main thread and goroutines share one mutex", function()
        local mu = go.mutex()
        local counter = 0
        local function add_100()
          for _ = 1, 100 do
            mu:lock()
            local v = counter
            go.yield()
            counter = v + 1
            mu:unlock()
          end
        end
        local wg = go.waitgroup()
        wg:add(4)
        for _ = 1, 4 do
          go(function() add_100(); wg:done() end)
        end
        add_100()
        wg:wait()
        assert.equal(500, counter)
      end)

      it("trylock fails while another goroutine holds the lock", function()
        local mu, held, result = go.mutex(), go.chan(), go.chan()
        go(function()
          mu:lock()
          held:send(true)
          result:recv()
          mu:unlock()
        end)
        held:recv()
        assert.is_false(mu:trylock())
        result:send(true)
        go.wait()
        assert.is_true(mu:trylock())
        mu:unlock()
      end)
    end)
  end
end)

describe("go.mutex and go.waitgroup check self", function()
  H.check_goroutines(before_each, after_each)

  -- Everything a method could be handed instead of its object.
  local function strangers()
    local t = go.timer(60)
    t:stop()
    return {
      { "nil", nil }, { "a number", 42 }, { "a string", "goro.mutex" },
      { "a table", {} }, { "a function", print },
      { "a coroutine", coroutine.create(print) }, { "io.stdout", io.stdout },
      { "a channel", go.chan(1) }, { "a timer", t },
    }
  end

  local function check(kind, other, fs)
    for _, name in ipairs(H.sorted_keys(fs)) do
      it(kind .. ":" .. name .. " raises for any self that is not a " .. kind, function()
        local f = fs[name]
        local selves = strangers()
        selves[#selves + 1] = { "a " .. other, other == "mutex" and go.mutex() or go.waitgroup() }
        for _, s in ipairs(selves) do
          local ok, err = pcall(f[1], s[2], table.unpack(f, 2))
          assert.is_false(ok, name .. " accepted " .. s[1])
          assert.matches("goro." .. kind .. " expected", err, 1, true, name .. " with " .. s[1])
        end
      end)
    end
  end

  local mmt, wmt = getmetatable(go.mutex()), getmetatable(go.waitgroup())
  check("mutex", "waitgroup", {
    lock = { mmt.__index.lock }, unlock = { mmt.__index.unlock },
    trylock = { mmt.__index.trylock }, __gc = { mmt.__gc },
  })
  check("waitgroup", "mutex", {
    add = { wmt.__index.add, 1 }, done = { wmt.__index.done },
    wait = { wmt.__index.wait }, __tostring = { wmt.__tostring },
  })

  it("a channel's __gc on a mutex leaves the mutex working", function()
    local mu = go.mutex()
    assert.is_false((pcall(getmetatable(go.chan()).__gc, mu)))
    mu:lock()
    assert.is_false(mu:trylock())
    mu:unlock()
  end)

  it("a mutex whose __gc has run raises a clear error, a second __gc does nothing", function()
    local mu = go.mutex()
    mu:lock()
    getmetatable(mu).__gc(mu)
    getmetatable(mu).__gc(mu)
    for _, m in ipairs{ "lock", "unlock", "trylock" } do
      assert.error_matches(function() mu[m](mu) end, "goro: mutex used after it was finalised", 1, true)
    end
  end)

  it("a waitgroup whose done channel was finalised raises a clear error", function()
    local wg = go.waitgroup()
    wg:add(2)
    local ch = debug.getuservalue(wg, 1)
    getmetatable(ch).__gc(ch)
    assert.error_matches(function() wg:done() end, "goro: waitgroup used after it was finalised", 1, true)
    assert.error_matches(function() wg:wait() end, "goro: waitgroup used after it was finalised", 1, true)
    assert.equal("goro.waitgroup(2)", tostring(wg))   -- the failed done changed nothing
  end)
end)
