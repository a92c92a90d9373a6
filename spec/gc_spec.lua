-- Garbage collection (issue: "references are released when received or when
-- the channel is collected; a channel unreachable from Lua and without
-- waiters is garbage collected").  Weak tables observe what the collector
-- frees.
local go = require "goro"
local H = require "spec.helper"

local function collect()
  collectgarbage()
  collectgarbage()
end

describe("garbage collection", function()
  after_each(function() go.wait() end)

  it("collects a channel nothing refers to", function()
    local weak = setmetatable({}, { __mode = "v" })
    weak[1] = go.chan()
    weak[2] = go.chan(10)
    collect()
    assert.is_nil(weak[1])
    assert.is_nil(weak[2])
  end)

  it("releases the values a collected channel still buffered", function()
    local weak = setmetatable({}, { __mode = "v" })
    do
      local ch = go.chan(3)
      local t, f = {}, function() end
      weak.t, weak.f = t, f
      ch:send(t)
      ch:send(f)
      ch:send(("long string "):rep(4))
    end
    collect()
    assert.is_nil(weak.t)
    assert.is_nil(weak.f)
  end)

  it("releases a value once it has been received", function()
    local weak = setmetatable({}, { __mode = "v" })
    local ch = go.chan(1)
    do
      local t = {}
      weak.t = t
      ch:send(t)
    end
    collect()
    assert.is_not_nil(weak.t)      -- held by the channel's buffer
    ch:recv()
    collect()
    assert.is_nil(weak.t)          -- the receiver dropped it
  end)

  it("keeps a channel alive while a goroutine waits on it", function()
    local weak = setmetatable({}, { __mode = "v" })
    local got = go.chan(1)
    do
      local ch = go.chan()
      weak.ch = ch
      go(function() got:send(ch:recv()) end)
      go.yield()
    end
    -- Only the parked goroutine refers to ch now.
    collect()
    assert.is_not_nil(weak.ch)
    weak.ch:send("still here")
    assert.equal("still here", got:recv())
  end)

  it("a channel resurrected by another finaliser is inert, and leaks nothing", function()
    -- Lua 5.4 runs every finaliser of a cycle, even for an object that an
    -- earlier one made reachable again.
    local weak = setmetatable({}, { __mode = "v" })
    local saved
    do
      local ch = go.chan(4)
      local t = {}
      weak.t = t
      ch:send(t)
      ch:send("short")
      setmetatable({}, { __gc = function() saved = ch end })
    end
    collect()
    assert.is_not_nil(saved)
    for _, f in ipairs{ saved.send, saved.recv, saved.close, saved.len, saved.cap } do
      local ok, err = pcall(f, saved, {})
      assert.is_false(ok)
      assert.matches("goro: channel used after it was finalised", err, 1, true)
    end
    assert.is_nil(go.select{ go.chan(), default = true })   -- selects still work
    saved = nil
    collect()
    assert.is_nil(weak.t)   -- the buffered value was released, once
  end)

  it("a resurrected mutex, waitgroup and timer are inert", function()
    local mu, wg, t
    do
      local m, w, tm = go.mutex(), go.waitgroup(), go.timer(60)
      w:add(1)
      setmetatable({}, { __gc = function() mu, wg, t = m, w, tm end })
    end
    collect()
    assert.error_matches(function() mu:lock() end, "goro: mutex used after it was finalised", 1, true)
    assert.error_matches(function() mu:trylock() end, "goro: mutex used after it was finalised", 1, true)
    assert.error_matches(function() mu:unlock() end, "goro: mutex used after it was finalised", 1, true)
    assert.error_matches(function() wg:wait() end, "goro: waitgroup used after it was finalised", 1, true)
    assert.error_matches(function() wg:done() end, "goro: waitgroup used after it was finalised", 1, true)
    assert.error_matches(function() wg:add(1) end, "goro: waitgroup used after it was finalised", 1, true)
    assert.equal("goro.waitgroup(1)", tostring(wg))   -- unchanged by the errors
    assert.is_false(t:stop())
    assert.error_matches(function() t:reset(1) end, "goro: timer used after it was finalised", 1, true)
    assert.error_matches(function() t.c:recv() end, "goro: channel used after it was finalised", 1, true)
  end)

  -- A finaliser that does channel work on the goroutine whose receive is
  -- pushing its results (the push allocates, the allocation runs a step
  -- of the collector): the receive must still return its own value and ok.
  describe("finalisers that use channels while a receive returns", function()
    local N = 50000

    local function check(body)
      local closed = go.chan()
      closed:close()
      -- Short strings travel inline: each receive makes a new Lua string,
      -- since the ones sent are collected before, and the checks make
      -- none (tonumber).
      local ch = go.chan(N)
      for i = 1, N do ch:send(string.format("%x", i)) end
      collect()
      local mt = { __gc = function()
        closed:recv()                         -- nil, false
        go.select{ closed, default = true }   -- 1, nil, false
      end }
      -- Generational mode runs every pending finaliser at the end of each
      -- minor collection, which the receive's push of its string is then
      -- most often the allocation to start.
      local bad = 0
      local mode = collectgarbage("generational", 1, 100)
      local ok, err = pcall(function()
        for i = 1, N do
          if i % 8 == 0 then setmetatable({}, mt) end
          local v, vok = body(ch)
          if tonumber(v, 16) ~= i or vok ~= true then bad = bad + 1 end
        end
      end)
      collectgarbage(mode)
      assert(ok, err)
      assert.equal(0, bad, "receives that returned another's results")
    end

    it("ch:recv()", function()
      check(function(ch) return ch:recv() end)
    end)

    it("go.select", function()
      check(function(ch)
        local i, v, ok = go.select{ ch }
        assert(i == 1)
        return v, ok
      end)
    end)

    it("ch:iter()", function()
      check(function(ch)
        for v in ch:iter() do return v, true end
      end)
    end)

    it("in a goroutine", function()
      local out = H.async(function()
        return pcall(check, function(ch) return ch:recv() end)
      end)
      local r = out:recv()
      assert.is_true(r[1], tostring(r[2]))
    end)
  end)

  it("collects finished goroutines' values and channels", function()
    local weak = setmetatable({}, { __mode = "k" })
    local wg = go.waitgroup()
    for _ = 1, 100 do
      wg:add(1)
      go(function(t)
        local ch = go.chan(1)
        ch:send(t)
        weak[ch] = true
        wg:done()
      end, {})
    end
    wg:wait()
    go.wait()
    collect()
    assert.is_nil(next(weak))
  end)
end)
