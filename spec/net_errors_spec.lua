-- go.net misused: what a script can do wrong to a socket must end in a Lua
-- error or `nil, message`, never in a crash or a write into foreign memory
-- (issue 11, items 1, 12, 19 and 20).
--
--   self         every method and metamethod of a socket checks that its
--                `self` is a socket of its own class
--   options      bad option types and unknown options name the function
--                and the option; NaN, negative and huge numbers
--   timeouts     math.huge and 1e300 are "forever", not an overflow
--   addresses    a port is decimal digits, 0 to 65535, nothing else
--   sendto       a socket closed while sendto looks a name up is closed
--   resolve      out of fds, a lookup says so, not "no such host"
local go = require "goro"
local H = require "spec.helper"

local net = go.net

-- Assert the `nil, message` of a failed call; returns the message.
local function fails(expected, ...)
  local r = H.pack(...)
  assert.is_nil(r[1], "expected a failure, got " .. tostring(r[1]))
  assert.equal("string", type(r[2]), "the message")
  if expected then assert.equal(expected, r[2]) end
  return r[2]
end

-- The message of the error f raises (it must raise).
local function raises(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

-- Lua's own words for the error: a pattern of `text`.
local function plain(text)
  return (text:gsub("%p", "%%%0"))
end

describe("go.net misuse", function()
  H.check_goroutines(before_each, after_each)

  describe("self", function()
    -- One socket of each class, and everything else a script could pass
    -- as self.
    local function sockets()
      local l = assert(net.listen("127.0.0.1:0"))
      local c = assert(net.dial(l:addr()))
      local s = assert(l:accept())
      local u = assert(net.udp("127.0.0.1:0"))
      return { ["goro.listener"] = l, ["goro.conn"] = c, ["goro.udp"] = u }, { l, c, s, u }
    end

    local function others(of, timer)
      local list = {
        { "goro.chan", go.chan() }, { "goro.chan", go.chan(3) },
        { "goro.mutex", go.mutex() }, { "goro.waitgroup", go.waitgroup() },
        { "goro.timer", timer },
        { "FILE*", io.stdout }, { "nil", nil }, { "number", 1 },
        { "string", "x" }, { "table", {} }, { "boolean", true },
        { "function", print }, { "thread", coroutine.create(print) },
      }
      for name, sock in pairs(of) do list[#list + 1] = { name, sock } end
      return list
    end

    it("the examples of the issue raise, and leave the listener working", function()
      local l = assert(net.listen("127.0.0.1:0"))
      local err = raises(function() l.close(go.chan()) end)
      assert.matches(plain("bad argument #1 to 'close' (goro.listener expected, got goro.chan)"), err)
      err = raises(function() l.close(io.stdout) end)
      assert.matches(plain("bad argument #1 to 'close' (goro.listener expected, got FILE*)"), err)
      err = raises(function() l.settimeout(go.chan(), 1) end)
      assert.matches(plain("bad argument #1 to 'settimeout' (goro.listener expected, got goro.chan)"), err)
      -- io.stdout was not closed by it
      assert.equal("file (0x", tostring(io.stdout):sub(1, 8))
      local c = assert(net.dial(l:addr()))
      local s = assert(l:accept())
      c:close(); s:close(); l:close()
    end)

    it("every method and metamethod of every class checks its self", function()
      local byclass, all = sockets()
      local timer = go.timer(60)
      local checked = 0
      for class, sock in pairs(byclass) do
        local mt = getmetatable(sock)
        local calls = {}
        for name, f in pairs(mt.__index) do calls[name] = f end
        calls.__gc, calls.__close, calls.__tostring = mt.__gc, mt.__close, mt.__tostring
        for name, f in pairs(calls) do
          for _, other in ipairs(others(byclass, timer)) do
            local got, bad = other[1], other[2]
            if got ~= class then
              local ok, err = pcall(f, bad, "x", "127.0.0.1:9")
              assert.is_false(ok, class .. "." .. name .. " took a " .. got)
              assert.matches(plain(class .. " expected, got " .. got), tostring(err),
                             1, false, class .. "." .. name)
              checked = checked + 1
            end
          end
        end
      end
      timer:stop()
      assert.is_true(checked > 100)
      -- The sockets are all still there.
      for _, sock in ipairs(all) do
        assert.matches("%(fd %d+%)$", tostring(sock))
        sock:close()
      end
    end)

    it("a method called with the right self still works, through any path", function()
      local byclass, all = sockets()
      local l = byclass["goro.listener"]
      assert.equal(l:addr(), getmetatable(l).__index.addr(l))
      assert.matches("^goro%.listener %(fd", getmetatable(l).__tostring(l))
      getmetatable(l).__close(l, nil)
      assert.equal("goro.listener (closed)", tostring(l))
      getmetatable(l).__gc(l)   -- a second close is no harm
      for _, sock in ipairs(all) do sock:close() end
    end)

    it("checks self inside a goroutine too", function()
      local l = assert(net.listen("127.0.0.1:0"))
      local r = H.async(function()
        return pcall(function() return l.accept(go.chan()) end)
      end):recv()
      assert.is_false(r[1])
      assert.matches(plain("bad argument #1 to 'accept' (goro.listener expected, got goro.chan)"), r[2])
      l:close()
    end)
  end)

  describe("options", function()
    local function dial_err(opts) return raises(net.dial, "127.0.0.1:9", opts) end
    local function listen_err(opts) return raises(net.listen, "127.0.0.1:0", opts) end

    it("of the wrong type name the function and the option", function()
      assert.equal("bad option 'timeout' to 'dial' (number expected, got table)", dial_err({ timeout = {} }))
      assert.equal("bad option 'timeout' to 'dial' (number expected, got goro.chan)", dial_err({ timeout = go.chan() }))
      assert.equal("bad option 'backlog' to 'listen' (number expected, got string)", listen_err({ backlog = "many" }))
      assert.equal("bad option 'reuseport' to 'listen' (boolean expected, got number)", listen_err({ reuseport = 1 }))
    end)

    it("unknown to the function are an error", function()
      assert.equal("bad option 'timeot' to 'dial' (unknown option)", dial_err({ timeot = 1 }))
      assert.equal("bad option 'backlog' to 'dial' (unknown option)", dial_err({ backlog = 1 }))
      assert.equal("bad option 'timeout' to 'listen' (unknown option)", listen_err({ timeout = 1 }))
      assert.equal("bad option '1' to 'listen' (unknown option)", listen_err({ 5 }))
    end)

    it("NaN and negative numbers are errors", function()
      assert.equal("bad option 'timeout' to 'dial' (not a number)", dial_err({ timeout = 0 / 0 }))
      assert.equal("bad option 'timeout' to 'dial' (must not be negative)", dial_err({ timeout = -1 }))
      assert.equal("bad option 'backlog' to 'listen' (not a number)", listen_err({ backlog = 0 / 0 }))
      assert.equal("bad option 'backlog' to 'listen' (must not be negative)", listen_err({ backlog = -1 }))
    end)

    it("a huge backlog is the system's largest", function()
      for _, backlog in ipairs({ math.huge, 1e300, 2 ^ 31, 2 ^ 63 }) do
        local l = assert(net.listen("127.0.0.1:0", { backlog = backlog }))
        local c = assert(net.dial(l:addr()))
        local s = assert(l:accept())
        c:close(); s:close(); l:close()
      end
    end)

    it("a huge dial timeout is no timeout", function()
      for _, timeout in ipairs({ math.huge, 1e300, 9.3e9 }) do
        local l = assert(net.listen("127.0.0.1:0"))
        local c = assert(net.dial(l:addr(), { timeout = timeout }))
        local s = assert(l:accept())
        c:close(); s:close(); l:close()
      end
    end)

    it("the known options still work, and nil or no table means none", function()
      local l = assert(net.listen("127.0.0.1:0", { backlog = 8, reuseport = false }))
      assert(net.dial(l:addr(), { timeout = 5 })):close()
      assert(net.dial(l:addr(), {})):close()
      assert(net.dial(l:addr(), nil)):close()
      l:close()
      assert.matches(plain("bad argument #2 to 'dial' (table expected, got number)"),
                     raises(function() net.dial("127.0.0.1:9", 5) end))
    end)
  end)

  describe("timeouts", function()
    it("settimeout: NaN and negative numbers are errors", function()
      local u = assert(net.udp("127.0.0.1:0"))
      assert.matches("not a number", raises(function() u:settimeout(0 / 0) end))
      assert.matches("must not be negative", raises(function() u:settimeout(-1) end))
      u:close()
    end)

    -- A read with a timeout of `forever` waits: a go.after timer of 0.2 s
    -- fires first, then the data written after it arrives.  A timeout
    -- that overflowed into the past would end the read at once, before
    -- the timer.  (If this goroutine is slow to start its read, the data
    -- is there first and the test proves nothing, but does not fail.)
    local function waits_with_timeout(forever)
      local c, s = H.tcp_pair()
      s:settimeout(forever)
      local got = H.async(function() return s:read() end)
      local first, early = go.select({ got, go.after(0.2) })
      if first == 1 then
        c:close(); s:close()
        error("the read ended before the timer: " .. tostring(early[1] or early[2]))
      end
      assert(c:write("x"))
      local r = got:recv()
      assert.equal("x", r[1], tostring(r[2]))
      c:close(); s:close()
    end

    for _, forever in ipairs({ math.huge, 1e300, 2 ^ 63 }) do
      it("settimeout(" .. forever .. ") on a conn is forever", function()
        waits_with_timeout(forever)
      end)
    end

    it("settimeout(math.huge) on a listener and a UDP socket is forever", function()
      local l = assert(net.listen("127.0.0.1:0"))
      l:settimeout(math.huge)
      local got = H.async(function() return l:accept() end)
      assert.equal(2, (go.select({ got, go.after(0.2) })))
      local c = assert(net.dial(l:addr()))
      local s = got:recv()[1]
      assert.equal("goro.conn", tostring(s):match("^%S+"))
      c:close(); s:close(); l:close()

      local a, b = assert(net.udp("127.0.0.1:0")), assert(net.udp("127.0.0.1:0"))
      b:settimeout(1e300)
      got = H.async(function() return b:recvfrom() end)
      assert.equal(2, (go.select({ got, go.after(0.2) })))
      assert(a:sendto("ping", b:addr()))
      assert.equal("ping", got:recv()[1])
      a:close(); b:close()
    end)
  end)

  describe("addresses", function()
    local BAD = { "127.0.0.1: 0", "127.0.0.1:", "127.0.0.1:+1", "127.0.0.1:-1",
                  "127.0.0.1:65536", "127.0.0.1: 80", "127.0.0.1:80 ", "127.0.0.1:0x50",
                  "127.0.0.1:8e1", "127.0.0.1:99999999999999999999", "127.0.0.1", "" }
    local INVALID = 'invalid address (want "host:port")'

    it("a port that is not 0 to 65535 in decimal digits is refused by every call", function()
      local u = assert(net.udp("127.0.0.1:0"))
      for _, addr in ipairs(BAD) do
        fails(INVALID, net.listen(addr))
        fails(INVALID, net.dial(addr))
        fails(INVALID, net.udp(addr))
        fails(INVALID, u:sendto("x", addr))
      end
      u:close()
    end)

    it("a port with leading zeros, and 65535, are ports", function()
      local l = assert(net.listen("127.0.0.1:00"))
      local port = l:addr():match(":(%d+)$")
      local c = assert(net.dial("127.0.0.1:000" .. port))
      c:close(); l:close()
      local u = net.udp("127.0.0.1:65535")   -- may be in use: then nil, message
      if u then u:close() end
    end)
  end)

  describe("sendto", function()
    -- sendto("localhost:port") parks for the lookup.  Started just before
    -- it, with one P, another goroutine runs during that park: it closes
    -- the socket and opens another, which may get the same fd number.
    -- sendto must then answer "closed", never send through the fd.  An
    -- attempt where the closer ran only after sendto had returned proves
    -- nothing and is tried again.
    it("of a socket closed during the name lookup returns nil, 'closed'", function()
      local procs = go.gomaxprocs()
      H.use_procs(1)
      local target = assert(net.udp("127.0.0.1:0"))
      local port = target:addr():match(":(%d+)$")
      local proved, results = 0, {}
      for _ = 1, 20 do
        local u = assert(net.udp("127.0.0.1:0"))
        local returned, during, other = false, nil, nil
        local done = go.chan(1)
        go(function()
          go(function()
            during = not returned
            u:close()
            other = assert(net.udp("127.0.0.1:0"))
          end)
          local r = H.pack(u:sendto("x", "localhost:" .. port))
          returned = true
          done:send(r)
        end)
        local r = done:recv()
        go.wait()
        other:close()
        if during then
          proved = proved + 1
          results[#results + 1] = r
        end
      end
      target:close()
      H.use_procs(procs)
      assert.is_true(proved > 0, "the socket was never closed during the lookup")
      for _, r in ipairs(results) do
        assert.same({ n = 2, nil, "closed" }, r)
      end
    end)
  end)

  describe("resolve", function()
    -- In a child with few fds, all of them open: glibc's getaddrinfo then
    -- answers "no such host" for localhost itself.
    it("out of fds says 'too many open files', not 'no such host'", function()
      local status, out, err = H.run_child(pending, [[
        local go = require "goro"
        assert(go.net.resolve("localhost"))   -- the poller and its pool are up
        local u = assert(go.net.udp("127.0.0.1:0"))
        local files = {}
        while true do
          local f = io.open("/dev/null")
          if not f then break end
          files[#files + 1] = f
        end
        print(go.net.resolve("localhost"))
        print(go.net.dial("localhost:9"))
        print(select(2, u:sendto("x", "localhost:9")))
        files[#files]:close()
        files[#files - 1]:close()
        print(#assert(go.net.resolve("localhost")) > 0)
      ]], nil, { ulimit_n = 64 })
      assert.equal(0, status, H.describe_child(status, out, err))
      assert.equal("nil\ttoo many open files\nnil\ttoo many open files\n" ..
                   "too many open files\ntrue\n", out)
    end)
  end)

  it("readn of 2^53 bytes asks for memory only as data comes", function()
    -- Before: one realloc of 2^53 bytes (ASan aborts on it; elsewhere
    -- it fails, or reserves the whole address space).
    local c, s = H.tcp_pair()
    s:write("abc")
    s:close()
    assert.are.same({ nil, "closed" }, { c:readn(2^53) })
    c:close()
    c, s = H.tcp_pair()
    s:write(string.rep("x", 300000))
    s:close()
    assert.are.same({ nil, "closed" }, { c:readn(2^53) })
    c:close()
  end)
end)
