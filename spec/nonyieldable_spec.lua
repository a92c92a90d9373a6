-- Blocking calls work at any depth (API.md, "Goroutines"): inside nested
-- coroutine.wrap iterators, inside pcall, inside callbacks from C
-- (table.sort comparators, string.gsub functions, metamethods).  Where Lua
-- cannot yield the binding blocks another way (DESIGN.md, "lua-binding");
-- the Lua program must not see the difference.  So every blocking operation
-- below runs in every context, in a goroutine and on the main thread, and
-- must give exactly what it gives at the top level of a goroutine.
local go = require "goro"
local H = require "spec.helper"

local chan_mt = getmetatable(go.chan())

-- Contexts: each runs body() (which returns one table) at some depth and
-- returns what it returned.
local contexts = {
  { "at the top level", function(body)
    return body()
  end },
  { "inside pcall", function(body)
    local ok, r = pcall(body)
    assert(ok, r)
    return r
  end },
  { "inside xpcall", function(body)
    local ok, r = xpcall(body, debug.traceback)
    assert(ok, r)
    return r
  end },
  { "inside coroutine.wrap", function(body)
    return coroutine.wrap(body)()
  end },
  { "inside coroutine.resume", function(body)
    local co = coroutine.create(body)
    local ok, r = coroutine.resume(co)
    assert(ok, r)
    return r
  end },
  { "inside nested coroutine.wrap iterators", function(body)
    local outer = coroutine.wrap(function()
      for r in coroutine.wrap(function() coroutine.yield(body()) end) do
        coroutine.yield(r)
      end
    end)
    for r in outer do return r end
  end },
  { "inside coroutine.wrap inside pcall", function(body)
    local ok, r = pcall(function() return coroutine.wrap(body)() end)
    assert(ok, r)
    return r
  end },
  { "inside pcall inside coroutine.wrap", function(body)
    return coroutine.wrap(function()
      local ok, r = pcall(body)
      assert(ok, r)
      return r
    end)()
  end },
  { "in a table.sort comparator", function(body)
    local r
    table.sort({ 3, 1, 2 }, function(a, b)
      if r == nil then r = body() end
      return a < b
    end)
    return r
  end },
  { "in a string.gsub callback", function(body)
    local r
    string.gsub("abc", "%w", function()
      if r == nil then r = body() end
    end)
    return r
  end },
  { "in __index called from C (table.concat)", function(body)
    local r
    local t = setmetatable({}, {
      __len = function() return 1 end,
      __index = function()
        if r == nil then r = body() end
        return "x"
      end,
    })
    assert(table.concat(t) == "x")
    return r
  end },
  { "in __lt called from C (table.sort)", function(body)
    local r
    local mt = { __lt = function(a, b)
      if r == nil then r = body() end
      return a.v < b.v
    end }
    table.sort({ setmetatable({ v = 2 }, mt), setmetatable({ v = 1 }, mt) })
    return r
  end },
  { "in __tostring called from C (tostring)", function(body)
    local r
    local obj = setmetatable({}, { __tostring = function()
      r = body()
      return "obj"
    end })
    assert(tostring(obj) == "obj")
    return r
  end },
  { "in __eq", function(body)
    local r
    local mt = { __eq = function() r = body(); return true end }
    assert(setmetatable({}, mt) == setmetatable({}, mt))
    return r
  end },
  { "in __concat", function(body)
    local r
    local obj = setmetatable({}, { __concat = function() r = body(); return "c" end })
    assert(obj .. "x" == "c")
    return r
  end },
  { "in __index", function(body)
    local r
    local t = setmetatable({}, { __index = function() r = body(); return 1 end })
    assert(t.anything == 1)
    return r
  end },
  { "in __close", function(body)
    local r
    do
      local _ <close> = setmetatable({}, { __close = function() r = body() end })
    end
    return r
  end },
  { "in __eq inside a string.gsub callback inside coroutine.wrap", function(body)
    return coroutine.wrap(function()
      local r
      string.gsub("a", "a", function()
        local mt = { __eq = function() r = body(); return true end }
        assert(setmetatable({}, mt) == setmetatable({}, mt))
      end)
      return r
    end)()
  end },
  { "in a comparator inside nested coroutines inside pcall", function(body)
    local ok, r = pcall(coroutine.wrap(function()
      return coroutine.wrap(function()
        local r
        table.sort({ 2, 1 }, function(a, b)
          if r == nil then r = body() end
          return a < b
        end)
        return r
      end)()
    end))
    assert(ok, r)
    return r
  end },
}

-- Operations: setup() makes the state (on the main thread); partner(st)
-- runs in a goroutine started just before block(st) and is what lets
-- block(st) go on.  The partner can only run once the blocking side has let
-- go of the Lua token, that is once it blocked: so block(st) really blocks.
local ops = {
  { name = "ch:recv()",
    setup = function() return { ch = go.chan() } end,
    partner = function(st) st.ch:send("v") end,
    block = function(st) return H.pack(st.ch:recv()) end,
    expect = H.pack("v", true) },

  { name = "ch:recv() of a table",
    setup = function() return { ch = go.chan(), t = {} } end,
    partner = function(st) st.ch:send(st.t) end,
    block = function(st)
      local v, ok = st.ch:recv()
      return H.pack(rawequal(v, st.t), ok)
    end,
    expect = H.pack(true, true) },

  { name = "ch:recv() woken by close",
    setup = function() return { ch = go.chan() } end,
    partner = function(st) st.ch:close() end,
    block = function(st) return H.pack(st.ch:recv()) end,
    expect = H.pack(nil, false) },

  { name = "ch:send()",
    setup = function() return { ch = go.chan(), back = go.chan() } end,
    partner = function(st) st.back:send(st.ch:recv()) end,
    block = function(st)
      local n = select("#", st.ch:send("v"))
      return H.pack(n, (st.back:recv()))
    end,
    expect = H.pack(0, "v") },

  { name = "ch:send() on a full buffered channel",
    setup = function()
      local st = { ch = go.chan(1) }
      st.ch:send("first")
      return st
    end,
    partner = function(st) st.ch:recv() end,
    block = function(st)
      st.ch:send("second")
      return H.pack(st.ch:len())
    end,
    expect = H.pack(1) },

  { name = "ch:send() raising when the channel is closed",
    setup = function() return { ch = go.chan() } end,
    partner = function(st) st.ch:close() end,
    block = function(st)
      local ok, err = pcall(st.ch.send, st.ch, "v")
      return H.pack(ok, (tostring(err):find("send on closed channel", 1, true)) ~= nil)
    end,
    expect = H.pack(false, true) },

  { name = "go.select receiving",
    setup = function() return { a = go.chan(), b = go.chan() } end,
    partner = function(st) st.b:send(7) end,
    block = function(st) return H.pack(go.select{ st.a, st.b }) end,
    expect = H.pack(2, 7, true) },

  { name = "go.select sending",
    setup = function() return { a = go.chan(), b = go.chan(), back = go.chan() } end,
    partner = function(st) st.back:send(st.b:recv()) end,
    block = function(st)
      local r = H.pack(go.select{ st.a, { st.b, "s" } })
      return H.pack(r.n, r[1], (st.back:recv()))
    end,
    expect = H.pack(1, 2, "s") },

  { name = "ch:iter()",
    setup = function() return { ch = go.chan() } end,
    partner = function(st)
      for i = 1, 3 do st.ch:send(i) end
      st.ch:close()
    end,
    block = function(st)
      local got = {}
      for v in st.ch:iter() do got[#got + 1] = v end
      return H.pack(table.unpack(got))
    end,
    expect = H.pack(1, 2, 3) },

  { name = "wg:wait()",
    setup = function()
      local st = { wg = go.waitgroup() }
      st.wg:add(1)
      return st
    end,
    partner = function(st) st.flag = "done"; st.wg:done() end,
    block = function(st)
      st.wg:wait()
      return H.pack(st.flag)
    end,
    expect = H.pack("done") },

  { name = "mu:lock()",
    setup = function()
      -- a third goroutine holds the mutex until the partner lets it go
      local st = { mu = go.mutex(), release = go.chan() }
      local locked = go.chan()
      go(function()
        st.mu:lock()
        locked:send(true)
        st.release:recv()
        st.mu:unlock()
      end)
      locked:recv()
      return st
    end,
    partner = function(st) st.flag = "unlocked"; st.release:send(true) end,
    block = function(st)
      st.mu:lock()
      local r = H.pack(st.flag)
      st.mu:unlock()
      return r
    end,
    expect = H.pack("unlocked") },

  { name = "go.yield()",
    setup = function() return {} end,
    partner = function(st) st.flag = true end,
    block = function(st)
      local n = select("#", go.yield())
      -- the partner gets to run while we keep yielding
      local spins = 0
      while not st.flag and spins < 100000 do
        go.yield()
        spins = spins + 1
      end
      return H.pack(n, st.flag)
    end,
    expect = H.pack(0, true) },
}

-- Unblock whatever an operation that went wrong left waiting.
local function release(st)
  for _, v in pairs(st) do
    if getmetatable(v) == chan_mt then pcall(v.close, v) end
  end
end

for _, procs in ipairs(H.PROCS) do
  describe("blocking at any depth with " .. procs .. " P:", function()
    local errs, out
    before_each(function()
      H.use_procs(procs)
      errs = {}
      go.onerror(function(err, tb, id)
        errs[#errs + 1] = { err = err, traceback = tb, id = id }
        if out then go.select{ { out, { failed = tostring(err) .. "\n" .. tostring(tb) } }, default = true } end
      end)
    end)
    after_each(function()
      go.wait()
      out = nil
    end)

    for _, op in ipairs(ops) do
      for _, c in ipairs(contexts) do
        local cname, ctx = c[1], c[2]

        it(op.name .. " in a goroutine " .. cname, function()
          out = go.chan(1)
          local st = op.setup()
          go(function()
            local id = go.id()
            go(op.partner, st)
            local r = ctx(function() return op.block(st) end)
            out:send({ r = r, same_id = go.id() == id })
          end)
          local res = out:recv()
          if res.failed then release(st) end
          assert.is_nil(res.failed)
          assert.same(op.expect, res.r)
          assert.is_true(res.same_id)
          go.wait()
          H.assert_no_errors(errs)
        end)

        it(op.name .. " on the main thread " .. cname, function()
          local st = op.setup()
          go(op.partner, st)
          local ok, r = pcall(ctx, function() return op.block(st) end)
          if not ok then release(st) end
          assert.is_true(ok, tostring(r))
          assert.same(op.expect, r)
          assert.equal(0, go.id())
          go.wait()
          H.assert_no_errors(errs)
        end)
      end
    end

    it("200 goroutines blocked at once in comparators and metamethods", function()
      local gate, done = go.chan(), go.waitgroup()
      local n = H.scaled(200)
      local sum = 0
      for i = 1, n do
        done:add(1)
        local ctx = contexts[(i % #contexts) + 1][2]
        go(function()
          local r = ctx(function() return { (gate:recv()) } end)
          sum = sum + r[1]
          done:done()
        end)
      end
      for i = 1, n do gate:send(i) end
      done:wait()
      assert.equal(n * (n + 1) // 2, sum)
      H.assert_no_errors(errs)
    end)
  end)
end
