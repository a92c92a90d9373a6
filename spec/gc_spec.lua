-- Garbage collection (issue: "references are released when received or when
-- the channel is collected; a channel unreachable from Lua and without
-- waiters is garbage collected").  Weak tables observe what the collector
-- frees.
local go = require "goro"

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
