-- Channels (API.md, "Channels").
local go = require "goro"
local H = require "spec.helper"

describe("channels", function()
  H.check_goroutines(before_each, after_each)

  it("go.chan() is unbuffered", function()
    local ch = go.chan()
    assert.equal(0, ch:cap())
    assert.equal(0, ch:len())
    assert.equal(0, #ch)
  end)

  it("a buffered channel holds cap values, FIFO, and reports len and cap", function()
    local ch = go.chan(3)
    assert.equal(3, ch:cap())
    ch:send("a")
    ch:send("b")
    assert.equal(2, #ch)
    assert.equal(2, ch:len())
    ch:send("c")
    assert.equal(3, #ch)
    assert.same({ "a", true }, { ch:recv() })
    assert.same({ "b", true }, { ch:recv() })
    assert.same({ "c", true }, { ch:recv() })
    assert.equal(0, #ch)
    assert.equal(3, ch:cap())
  end)

  it("an unbuffered send hands the value to a receiver", function()
    local ch = go.chan()
    go(function() ch:send(42) end)
    local v, ok = ch:recv()
    assert.equal(42, v)
    assert.is_true(ok)
  end)

  it("the main thread can send to a goroutine", function()
    local ch, back = go.chan(), go.chan()
    go(function() back:send(ch:recv() * 2) end)
    ch:send(21)
    assert.equal(42, (back:recv()))
  end)

  it("an unbuffered send does not complete before it is received", function()
    local ch, report = go.chan(), go.chan()
    local sent = false
    local sender = go(function() ch:send(1); sent = true end)
    go(function() H.wait_state(sender, "chan send"); report:send(sent) end)
    assert.is_false(report:recv())
    assert.equal(1, (ch:recv()))
  end)

  it("a send on a full buffered channel blocks until there is room", function()
    local ch, report = go.chan(1), go.chan()
    local sent = 0
    local sender = go(function()
      ch:send(1); sent = 1
      ch:send(2); sent = 2
    end)
    go(function() H.wait_state(sender, "chan send"); report:send(sent) end)
    assert.equal(1, (report:recv()))
    assert.equal(1, (ch:recv()))
    assert.equal(2, (ch:recv()))
  end)

  it("a receive blocks until a value is sent", function()
    local ch, report = go.chan(), go.chan()
    local got = false
    local receiver = go(function() ch:recv(); got = true end)
    go(function() H.wait_state(receiver, "chan receive"); report:send(got) end)
    assert.is_false(report:recv())
    ch:send("x")
    go.wait()
    assert.is_true(got)
  end)

  it("false is a value: recv returns false, true", function()
    local ch = go.chan(1)
    ch:send(false)
    local v, ok = ch:recv()
    assert.is_false(v)
    assert.is_true(ok)
  end)

  it("recv on a closed, drained channel returns nil, false", function()
    local ch = go.chan()
    ch:close()
    local v, ok = ch:recv()
    assert.is_nil(v)
    assert.is_false(ok)
    -- and again
    assert.same(H.pack(nil, false), H.pack(ch:recv()))
  end)

  it("a closed buffered channel is drained before recv reports closed", function()
    local ch = go.chan(2)
    ch:send(1)
    ch:send(2)
    ch:close()
    assert.same(H.pack(1, true), H.pack(ch:recv()))
    assert.same(H.pack(2, true), H.pack(ch:recv()))
    assert.same(H.pack(nil, false), H.pack(ch:recv()))
  end)

  it("send on a closed channel raises 'send on closed channel'", function()
    local ch = go.chan(1)
    ch:close()
    local ok, err = pcall(ch.send, ch, 1)
    assert.is_false(ok)
    assert.matches("send on closed channel", err, 1, true)
  end)

  it("close of a closed channel raises 'close of closed channel'", function()
    local ch = go.chan()
    ch:close()
    local ok, err = pcall(ch.close, ch)
    assert.is_false(ok)
    assert.matches("close of closed channel", err, 1, true)
  end)

  it("sending nil raises", function()
    local ch = go.chan(1)
    assert.has_error(function() ch:send(nil) end)
    assert.equal(0, #ch)
  end)

  it("close wakes every blocked receiver with nil, false", function()
    local ch, results = go.chan(), go.chan(10)
    local wg = go.waitgroup()
    wg:add(10)
    local receivers = {}
    for i = 1, 10 do
      receivers[i] = go(function()
        wg:done()
        results:send(H.pack(ch:recv()))
      end)
    end
    wg:wait()
    H.wait_state(receivers, "chan receive")
    ch:close()
    for _ = 1, 10 do
      assert.same(H.pack(nil, false), results:recv())
    end
  end)

  it("close makes every blocked sender raise 'send on closed channel'", function()
    local ch, results = go.chan(), go.chan(10)
    local wg = go.waitgroup()
    wg:add(10)
    local senders = {}
    for i = 1, 10 do
      senders[i] = go(function()
        wg:done()
        local ok, err = pcall(ch.send, ch, i)
        results:send({ ok, err })
      end)
    end
    wg:wait()
    H.wait_state(senders, "chan send")
    ch:close()
    for _ = 1, 10 do
      local r = results:recv()
      assert.is_false(r[1])
      assert.matches("send on closed channel", r[2], 1, true)
    end
  end)

  -- In the two tests below, goroutine i starts goroutine i+1 just before it
  -- blocks on ch.  A new goroutine runs only once its creator lets go of
  -- the Lua token, that is once goroutine i waits in ch's queue: so they
  -- queue in the order 1, 2, 3...  The last one tells the main thread.
  it("blocked receivers are served first come, first served", function()
    local n = 8
    local ch, all_queued, results = go.chan(), go.chan(), go.chan(n)
    local function receiver(i)
      if i < n then go(receiver, i + 1) else all_queued:send(true) end
      results:send({ i, (ch:recv()) })
    end
    go(receiver, 1)
    all_queued:recv()
    for v = 1, n do ch:send(v) end
    local got = {}
    for _ = 1, n do
      local r = results:recv()
      got[r[1]] = r[2]
    end
    assert.same({ 1, 2, 3, 4, 5, 6, 7, 8 }, got)
  end)

  it("blocked senders are served first come, first served", function()
    local n = 8
    local ch, all_queued = go.chan(), go.chan()
    local function sender(i)
      if i < n then go(sender, i + 1) else all_queued:send(true) end
      ch:send(i)
    end
    go(sender, 1)
    all_queued:recv()
    local got = {}
    for _ = 1, n do got[#got + 1] = ch:recv() end
    assert.same({ 1, 2, 3, 4, 5, 6, 7, 8 }, got)
  end)

  it("ch:iter() receives until the channel is closed and drained", function()
    local ch = go.chan(4)
    go(function()
      for i = 1, 10 do ch:send(i) end
      ch:close()
    end)
    local got = {}
    for v in ch:iter() do got[#got + 1] = v end
    assert.same({ 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 }, got)
  end)

  it("ch:iter() delivers false values and stops only at close", function()
    local ch = go.chan(3)
    ch:send(false)
    ch:send(true)
    ch:send(false)
    ch:close()
    local got = {}
    for v in ch:iter() do got[#got + 1] = v end
    assert.same({ false, true, false }, got)
  end)

  describe("carries values of every Lua type", function()
    local t, f, co = {}, function() return 1 end, coroutine.create(function() end)
    local ud = io.stdout
    local values = {
      { "true", true }, { "false", false },
      { "integer 0", 0 }, { "maxinteger", math.maxinteger }, { "mininteger", math.mininteger },
      { "float", 0.5 }, { "float with integer value", 3.0 }, { "huge", math.huge },
      { "-huge", -math.huge },
      { "empty string", "" }, { "15-byte string", ("x"):rep(15) },
      { "16-byte string", ("y"):rep(16) }, { "long string", ("z"):rep(10000) },
      { "string with zeros", "a\0b\0\0c" },
      { "table", t }, { "function", f }, { "coroutine", co }, { "userdata", ud },
      { "channel", go.chan() },
    }

    local function check(name, sent, got, ok)
      assert.is_true(ok, name)
      assert.equal(type(sent), type(got), name)
      assert.equal(math.type(sent), math.type(got), name)
      assert.is_true(rawequal(sent, got), name)
    end

    it("through a buffered channel on one thread", function()
      local ch = go.chan(#values)
      for _, p in ipairs(values) do ch:send(p[2]) end
      for _, p in ipairs(values) do
        local v, ok = ch:recv()
        check(p[1], p[2], v, ok)
      end
    end)

    it("between goroutines through an unbuffered channel", function()
      local ch = go.chan()
      go(function()
        for _, p in ipairs(values) do ch:send(p[2]) end
      end)
      for _, p in ipairs(values) do
        local v, ok = ch:recv()
        check(p[1], p[2], v, ok)
      end
    end)

    it("NaN and -0.0", function()
      local ch = go.chan(2)
      ch:send(0 / 0)
      ch:send(-0.0)
      local nan = ch:recv()
      assert.is_true(nan ~= nan)
      local negzero = ch:recv()
      assert.equal("float", math.type(negzero))
      assert.equal(-math.huge, 1 / negzero)
    end)

    it("tables by reference: changes made by the receiver are seen", function()
      local ch, done = go.chan(), go.chan()
      local shared = { n = 0 }
      go(function()
        local got = ch:recv()
        got.n = got.n + 1
        done:send(true)
      end)
      ch:send(shared)
      done:recv()
      assert.equal(1, shared.n)
    end)

    it("values still buffered are kept alive", function()
      local ch = go.chan(1)
      ch:send({ "payload" })
      collectgarbage()
      collectgarbage()
      assert.same({ "payload" }, (ch:recv()))
    end)
  end)

  it("a channel of channels serves request and reply", function()
    local requests = go.chan()
    go(function()
      for req in requests:iter() do req.reply:send(req.x * req.x) end
    end)
    for x = 1, 10 do
      local reply = go.chan()
      requests:send({ x = x, reply = reply })
      assert.equal(x * x, (reply:recv()))
    end
    requests:close()
  end)

  describe("checks self", function()
    -- Everything a channel function could be handed instead of a channel.
    local function strangers()
      local t = go.timer(60)
      t:stop()
      return {
        { "nil", nil }, { "a number", 42 }, { "a string", "goro.chan" },
        { "a table", {} }, { "a function", print },
        { "a coroutine", coroutine.create(print) }, { "io.stdout", io.stdout },
        { "a mutex", go.mutex() }, { "a waitgroup", go.waitgroup() },
        { "a timer", t },
      }
    end

    -- Every function of a channel, by name, with arguments after self.
    local function functions()
      local ch = go.chan(1)
      local mt = getmetatable(ch)
      return {
        send = { mt.__index.send, 1 }, recv = { mt.__index.recv },
        close = { mt.__index.close }, len = { mt.__index.len },
        cap = { mt.__index.cap }, iter = { mt.__index.iter },
        ["the iterator of iter"] = { (ch:iter()) },
        __gc = { mt.__gc }, __len = { mt.__len }, __tostring = { mt.__tostring },
      }
    end

    for _, name in ipairs(H.sorted_keys(functions())) do
      it(name .. " raises for any self that is not a channel", function()
        local f = functions()[name]
        for _, s in ipairs(strangers()) do
          local ok, err = pcall(f[1], s[2], table.unpack(f, 2))
          assert.is_false(ok, name .. " accepted " .. s[1])
          assert.matches("goro.chan expected", err, 1, true, name .. " with " .. s[1])
        end
      end)
    end

    it("a mutex's __gc on a channel leaves the channel working", function()
      local ch = go.chan(1)
      local gc = getmetatable(go.mutex()).__gc
      assert.is_false((pcall(gc, ch)))
      ch:send("still here")
      assert.equal("still here", (ch:recv()))
    end)
  end)

  describe("once finalised", function()
    local FINALISED = "goro: channel used after it was finalised"

    -- A channel whose __gc has run, and which Lua still reaches.
    local function finalised_chan()
      local ch = go.chan(2)
      ch:send("buffered")
      ch:send({})
      getmetatable(ch).__gc(ch)
      return ch
    end

    it("every method raises a clear error", function()
      local ch = finalised_chan()
      local calls = {
        send = function() ch:send(1) end, recv = function() ch:recv() end,
        close = function() ch:close() end, len = function() return ch:len() end,
        cap = function() return ch:cap() end, ["#"] = function() return #ch end,
        iter = function() for _ in ch:iter() do end end,
        select = function() go.select{ ch, default = true } end,
        ["select send"] = function() go.select{ { ch, 1 }, default = true } end,
      }
      for _, name in ipairs(H.sorted_keys(calls)) do
        local ok, err = pcall(calls[name])
        assert.is_false(ok, name)
        assert.matches(FINALISED, err, 1, true, name)
      end
    end)

    it("a second __gc does nothing, tostring still works", function()
      local ch = finalised_chan()
      getmetatable(ch).__gc(ch)
      assert.matches("^goro%.chan %(finalised%)", tostring(ch))
    end)

    it("a send to it keeps nothing: the value is collected", function()
      local ch = finalised_chan()
      local weak = setmetatable({}, { __mode = "v" })
      do
        local t = {}
        weak[1] = t
        assert.is_false((pcall(ch.send, ch, t)))
      end
      collectgarbage()
      collectgarbage()
      assert.is_nil(weak[1])
    end)

    it("raises in a goroutine too, which goes on", function()
      local ch = finalised_chan()
      local out = H.async(function() return pcall(ch.recv, ch) end)
      local r = out:recv()
      assert.is_false(r[1])
      assert.matches(FINALISED, r[2], 1, true)
    end)
  end)

  for _, procs in ipairs(H.PROCS) do
    describe("with " .. procs .. " P", function()
      before_each(function() H.use_procs(procs) end)

      it("ping-pong 10000 times over unbuffered channels", function()
        local ping, pong = go.chan(), go.chan()
        local n = H.scaled(10000)
        go(function()
          for v in ping:iter() do pong:send(v + 1) end
        end)
        local v = 0
        for _ = 1, n do
          ping:send(v)
          v = pong:recv()
        end
        ping:close()
        assert.equal(n, v)
      end)

      it("many senders, one receiver: every value arrives once", function()
        local ch = go.chan(8)
        local senders, each = 20, 200
        local wg = go.waitgroup()
        wg:add(senders)
        for s = 1, senders do
          go(function()
            for i = 1, each do ch:send(s * 1000 + i) end
            wg:done()
          end)
        end
        go(function() wg:wait(); ch:close() end)
        local seen, count = {}, 0
        for v in ch:iter() do
          assert.is_nil(seen[v])
          seen[v] = true
          count = count + 1
        end
        assert.equal(senders * each, count)
      end)
    end)
  end
end)
