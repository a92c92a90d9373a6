-- go.select (API.md, "select").
local go = require "goro"
local H = require "spec.helper"

-- A deep copy of a case table, to check that select leaves it alone.
local function snapshot(cases)
  local s = {}
  for k, v in pairs(cases) do
    if type(v) == "table" then
      local inner = {}
      for k2, v2 in pairs(v) do inner[k2] = v2 end
      s[k] = { ref = v, copy = inner }
    else
      s[k] = v
    end
  end
  return s
end

local function assert_unchanged(snap, cases)
  for k, v in pairs(cases) do assert.is_not_nil(snap[k], "new key " .. tostring(k)) end
  for k, v in pairs(snap) do
    if type(v) == "table" then
      assert.is_true(rawequal(v.ref, cases[k]), "case " .. tostring(k) .. " replaced")
      for k2, v2 in pairs(v.copy) do
        assert.is_true(rawequal(v2, cases[k][k2]), "case " .. tostring(k) .. " changed")
      end
      for k2 in pairs(cases[k]) do assert.is_not_nil(v.copy[k2]) end
    else
      assert.is_true(rawequal(v, cases[k]), "case " .. tostring(k) .. " changed")
    end
  end
end

describe("go.select", function()
  H.check_goroutines(before_each, after_each)

  it("returns the index, value and ok of a ready receive case", function()
    local a, b = go.chan(1), go.chan(1)
    b:send("hello")
    assert.same(H.pack(2, "hello", true), H.pack(go.select{ a, b }))
  end)

  it("a ready send case returns its index and delivers the value", function()
    local a, b = go.chan(), go.chan(1)
    local i = go.select{ a, { b, 42 } }
    assert.equal(2, i)
    assert.same(H.pack(42, true), H.pack(b:recv()))
  end)

  it("a receive case of a closed channel returns index, nil, false", function()
    local a, b = go.chan(), go.chan()
    b:close()
    assert.same(H.pack(2, nil, false), H.pack(go.select{ a, b }))
  end)

  it("a received false is returned as false, true", function()
    local a = go.chan(1)
    a:send(false)
    assert.same(H.pack(1, false, true), H.pack(go.select{ a }))
  end)

  it("default = true returns nil when no case is ready", function()
    local a, b = go.chan(), go.chan()
    assert.same(H.pack(nil), H.pack(go.select{ a, { b, 1 }, default = true }))
  end)

  it("default = true still takes a ready case", function()
    local a = go.chan(1)
    a:send(7)
    assert.same(H.pack(1, 7, true), H.pack(go.select{ a, default = true }))
  end)

  it("go.select{default = true} with no case returns nil", function()
    assert.same(H.pack(nil), H.pack(go.select{ default = true }))
  end)

  it("false disables a case", function()
    local a = go.chan(1)
    a:send("x")
    assert.same(H.pack(2, "x", true), H.pack(go.select{ false, a }))
    assert.same(H.pack(nil), H.pack(go.select{ false, false, default = true }))
  end)

  it("a send case that is not taken does not send its value", function()
    local a, b = go.chan(1), go.chan()   -- nobody receives from b
    a:send("ready")
    local got = go.chan(1)
    assert.equal(1, go.select{ a, { b, "unsent" } })
    -- a receiver arriving later finds nothing on b
    go(function() got:send(H.pack(go.select{ b, default = true })) end)
    assert.same(H.pack(nil), got:recv())
  end)

  it("a send case on a closed channel raises 'send on closed channel'", function()
    local a = go.chan(1)
    a:close()
    local ok, err = pcall(go.select, { { a, 1 } })
    assert.is_false(ok)
    assert.matches("send on closed channel", err, 1, true)
    ok, err = pcall(go.select, { { a, 1 }, default = true })
    assert.is_false(ok)
    assert.matches("send on closed channel", err, 1, true)
  end)

  it("blocks until a goroutine makes a case ready", function()
    local a, b = go.chan(), go.chan()
    go(function() H.wait_state(0, "select"); b:send("late") end)
    assert.same(H.pack(2, "late", true), H.pack(go.select{ a, b }))
  end)

  it("a blocked send case completes when a goroutine receives", function()
    local a, b = go.chan(), go.chan()
    local got = go.chan(1)
    go(function() got:send(b:recv()) end)
    assert.equal(2, go.select{ a, { b, "sent" } })
    assert.equal("sent", (got:recv()))
  end)

  it("a blocked select wakes when a case's channel is closed", function()
    local a, b = go.chan(), go.chan()
    go(function() H.wait_state(0, "select"); b:close() end)
    assert.same(H.pack(2, nil, false), H.pack(go.select{ a, b }))
  end)

  it("a blocked send case raises when its channel is closed", function()
    local a, b = go.chan(), go.chan()
    local result = go.chan(1)
    local selector = go(function() result:send({ pcall(go.select, { a, { b, 1 } }) }) end)
    H.wait_state(selector, "select")
    b:close()
    local r = result:recv()
    assert.is_false(r[1])
    assert.matches("send on closed channel", r[2], 1, true)
  end)

  it("passes tables by reference through send and receive cases", function()
    local a = go.chan()
    local t = {}
    local got = go.chan(1)
    go(function() local _, v = go.select{ a }; got:send(v) end)
    go.select{ { a, t } }
    assert.is_true(rawequal(t, got:recv()))
  end)

  it("never modifies the case table, which can be reused in a loop", function()
    local a, b, c = go.chan(1), go.chan(1), go.chan(1)
    local payload = {}
    local cases = { a, { b, payload }, false, c, default = true }
    local snap = snapshot(cases)
    local counts = { 0, 0, 0, 0 }
    for round = 1, 100 do
      if round % 3 == 0 and #a == 0 then a:send(round) end
      if round % 5 == 0 and #c == 0 then c:send(round) end
      local i = go.select(cases)
      if i then counts[i] = counts[i] + 1 end
      if i == 2 then b:recv() end
      assert_unchanged(snap, cases)
    end
    assert.equal(0, counts[3])
    assert.is_true(counts[1] > 0 and counts[2] > 0 and counts[4] > 0)
  end)

  it("chooses uniformly at random among ready cases", function()
    -- 3000 selects over three always-ready channels: each count is
    -- 1000 +- 26 (one standard deviation); 700..1300 is over 11 of them.
    local chans = { go.chan(1), go.chan(1), go.chan(1) }
    for _, ch in ipairs(chans) do ch:send(true) end
    local counts = { 0, 0, 0 }
    for _ = 1, 3000 do
      local i = go.select(chans)
      counts[i] = counts[i] + 1
      chans[i]:send(true)
    end
    for i = 1, 3 do
      assert.is_true(counts[i] > 700 and counts[i] < 1300,
                     "case " .. i .. " chosen " .. counts[i] .. " times of 3000")
    end
  end)

  it("chooses at random between a ready send and a ready receive", function()
    local r, s = go.chan(1), go.chan(1)
    local counts = { 0, 0 }
    for _ = 1, 2000 do
      r:send(1)
      local i = go.select{ r, { s, 2 } }
      counts[i] = counts[i] + 1
      -- empty both again
      go.select{ r, default = true }
      go.select{ s, default = true }
    end
    assert.is_true(counts[1] > 700 and counts[2] > 700,
                   "chosen " .. counts[1] .. " and " .. counts[2] .. " times")
  end)

  it("the same channel may appear in two cases", function()
    local a = go.chan(1)
    a:send(5)
    local i, v, ok = go.select{ a, a }
    assert.is_true(i == 1 or i == 2)
    assert.equal(5, v)
    assert.is_true(ok)
  end)

  describe("keeps what it waits on alive", function()
    -- The case table is changed and garbage collected while the select
    -- waits.  The goroutine that does it runs only once the main thread
    -- has given up the token, which it does in the select (the yield
    -- before gives it a fresh time slice, so no preemption comes between).

    it("the channel of a send case", function()
      local weak = setmetatable({}, { __mode = "v" })
      local fallback = go.chan()
      local function cases_of()   -- no register of the test keeps ch
        local ch = go.chan()
        weak.ch = ch
        return { { ch, "sent" }, fallback }
      end
      local cases = cases_of()
      local entered, seen = false, false
      go(function()
        while not entered do go.yield() end
        cases[1] = false
        collectgarbage()
        collectgarbage()
        local ch = weak.ch
        seen = ch ~= nil
        if ch then
          ch:recv()
        else
          fallback:send("collected")
        end
      end)
      go.yield()
      entered = true
      local i = go.select(cases)
      assert.is_true(seen, "the channel was collected while the select waited on it")
      assert.equal(1, i)
    end)

    it("a go.after case: its timer still fires", function()
      local deadline = go.after(5 * H.SLOW)
      local function cases_of() return { go.after(0.05), deadline } end
      local cases = cases_of()
      local entered = false
      go(function()
        while not entered do go.yield() end
        cases[1] = go.after(0.05)   -- not the select's: it took its channels
        collectgarbage()
        collectgarbage()
      end)
      go.yield()
      entered = true
      local i, v = go.select(cases)
      assert.equal(1, i, "the go.after was collected and its timer freed")
      assert.equal("number", type(v))
    end)

    it("in a goroutine, whose case table main changes", function()
      local weak = setmetatable({}, { __mode = "v" })
      local fallback, result = go.chan(), go.chan(1)
      local function cases_of()
        local ch = go.chan()
        weak.ch = ch
        return { ch, fallback }
      end
      local cases = cases_of()
      local entered = false
      go(function()
        go.yield()   -- a fresh time slice
        entered = true
        result:send(H.pack(go.select(cases)))
      end)
      -- The goroutine keeps the token from `entered` until its select
      -- blocks.
      while not entered do go.yield() end
      cases[1] = false
      collectgarbage()
      collectgarbage()
      local ch = weak.ch
      if ch then
        ch:send("sent")
      else
        fallback:send("collected")
      end
      local r = result:recv()
      assert.equal(1, r[1], "the channel was collected while the select waited on it")
      assert.equal("sent", r[2])
    end)
  end)

  describe("checks its case table", function()
    it("a length that is huge, negative or not an integer raises", function()
      local lengths = { 2^32, 2^32 + 1, math.maxinteger, 65536, -1, math.mininteger,
                        1.5, 0/0, math.huge, "x" }
      for _, len in ipairs(lengths) do
        local cases = setmetatable({ default = true }, { __len = function() return len end })
        local ok, err = pcall(go.select, cases)
        assert.is_false(ok, "length " .. tostring(len) .. " accepted")
        assert.matches("bad argument #1 to 'select' (", err, 1, true)
      end
      local cases = setmetatable({ default = true }, { __len = function() return 2^32 end })
      assert.error_matches(function() go.select(cases) end, "too many cases", 1, true)
    end)

    it("an unknown option or key raises, naming it", function()
      local a = go.chan(1)
      assert.error_matches(function() go.select{ a, defualt = true } end,
                           "bad argument #1 to 'select' (unknown option 'defualt')", 1, true)
      assert.error_matches(function() go.select{ a, [3] = a, default = true } end,
                           "case 3 out of 1..1", 1, true)
      assert.error_matches(function() go.select{ a, [1.5] = a, default = true } end,
                           "unexpected number key", 1, true)
      assert.error_matches(function() go.select{ a, [{}] = 1 } end,
                           "unexpected table key", 1, true)
      assert.error_matches(function() go.select{ a, default = "yes" } end,
                           "bad option 'default' to 'select' (boolean expected, got string)", 1, true)
      assert.is_nil(go.select{ a, default = true })
      a:send(1)
      assert.equal(1, (go.select{ a, default = false }))
    end)
  end)

  for _, procs in ipairs(H.PROCS) do
    describe("with " .. procs .. " P", function()
      before_each(function() H.use_procs(procs) end)

      it("fans in from several producers until all are closed", function()
        local n, each = 4, 250
        local chans = {}
        for p = 1, n do
          local ch = go.chan(p % 2)   -- some buffered, some not
          chans[p] = ch
          go(function()
            for i = 1, each do ch:send(p * 10000 + i) end
            ch:close()
          end)
        end
        local cases = {}
        for p = 1, n do cases[p] = chans[p] end
        local open, seen, count = n, {}, 0
        while open > 0 do
          local i, v, ok = go.select(cases)
          if ok then
            assert.is_nil(seen[v])
            seen[v] = true
            count = count + 1
          else
            cases[i] = false
            open = open - 1
          end
        end
        assert.equal(n * each, count)
      end)

      it("selects in goroutines on both sides", function()
        -- a sender that selects among sends, a receiver that selects among
        -- receives and a quit channel
        local a, b, quit = go.chan(), go.chan(), go.chan()
        local total = go.chan(1)
        go(function()
          for i = 1, 500 do go.select{ { a, i }, { b, i } } end
          quit:close()
        end)
        go(function()
          local sum = 0
          while true do
            local i, v = go.select{ a, b, quit }
            if i == 3 then break end
            sum = sum + v
          end
          total:send(sum)
        end)
        assert.equal(500 * 501 // 2, (total:recv()))
      end)
    end)
  end
end)
