-- Network at scale and under faults (issue 5, item 4): 10,000 concurrent
-- TCP connections on loopback; EMFILE on accept neither spins nor crashes;
-- a peer reset mid-read is an error; a slow reader blocks no other
-- connection; a goroutine blocked on a socket that another goroutine
-- closes wakes with "closed".  Loopback (127.0.0.1) only.
local go = require "goro"
local H = require "spec.helper"

if not go.net then
  describe("go.net faults", function()
    it("scale and faults", function() pending("go.net is not built yet") end)
  end)
  return
end

local net = go.net

local async = H.async

-- The 10,000 connections, in a child lua5.4 whose open-file limit is
-- raised with `ulimit -n`.  Run as `lua5.4 script both N LIMIT` it holds
-- both ends in one process (2 N sockets); as `lua5.4 script server N
-- LIMIT NOFILE` it holds the accepted ends and starts the dialing ends in
-- a second process (`client ADDR N LIMIT`), for hosts whose hard limit is
-- below 2 N.  Each connection says hello and reads its echo; none is
-- closed before all N are up, so that N are open at once.  The server
-- counts the most it had open at the same time.
local SCALE_CHILD = [==[
local go = require "goro"
local net = go.net
local mode = arg[1]

-- Dial n connections to addr, at most 256 dials in flight; each says
-- hello, reads the echo, and stays open until all n are up.
-- Returns how many were up at once, and the first failure.
local function clients(addr, n, limit)
  local slots = go.chan(256)
  local up, gate, done = go.waitgroup(), go.chan(), go.waitgroup()
  local ok, first = 0, nil
  up:add(n)
  done:add(n)
  for i = 1, n do
    go(function()
      slots:send(true)
      local c, err = net.dial(addr, { timeout = limit })
      if c then
        c:settimeout(limit)
        local line
        if c:write("hello " .. i .. "\n") then line, err = c:readline() end
        if line == "hello " .. i then ok = ok + 1 else c:close(); c = nil end
      end
      if not c then first = first or tostring(err) end
      slots:recv()
      up:done()
      gate:recv()
      if c then c:close() end
      done:done()
    end)
  end
  up:wait()
  local at_once = ok
  gate:close()
  done:wait()
  return at_once, first
end

-- Accept n connections; each echoes a line, then waits for EOF.  Returns
-- a function that waits for the end and returns the most open at once
-- and how many ended cleanly.
local function server(l, n, limit)
  local open, most, clean = 0, 0, 0
  local wg = go.waitgroup()
  wg:add(n)
  go(function()
    for _ = 1, n do
      local s = assert(l:accept())
      open = open + 1
      if open > most then most = open end
      go(function()
        s:settimeout(limit)
        local line = s:readline()
        if line and s:write(line .. "\n") then
          local x, err = s:read()
          if x == nil and err == "closed" then clean = clean + 1 end
        end
        s:close()
        open = open - 1
        wg:done()
      end)
    end
  end)
  return function() wg:wait(); return most, clean end
end

if mode == "client" then
  local at_once, first = clients(arg[2], tonumber(arg[3]), tonumber(arg[4]))
  print(string.format("client up=%d first=%s", at_once, tostring(first)))
  return
end

local n, limit = tonumber(arg[2]), tonumber(arg[3])
local l = assert(net.listen("127.0.0.1:0", { backlog = 4096 }))
local finish = server(l, n, limit)
local client_out
if mode == "both" then
  local at_once, first = clients(l:addr(), n, limit)
  client_out = string.format("client up=%d first=%s\n", at_once, tostring(first))
else
  local p = assert(io.popen(string.format(
    "sh -c 'ulimit -n %d && exec lua5.4 %s client %s %d %g' 2>&1",
    tonumber(arg[4]), arg[0], l:addr(), n, limit), "r"))
  local most, clean = finish()   -- wait on goroutines first: p:read blocks the thread
  client_out = p:read("a")
  p:close()
  io.write(client_out)
  print(string.format("server most=%d clean=%d", most, clean))
  return
end
local most, clean = finish()
io.write(client_out)
print(string.format("server most=%d clean=%d", most, clean))
]==]

-- EMFILE on accept, in a child with `ulimit -n 64`.  The child dials until
-- its table of files is full (the connections wait in the listener's
-- queue), then accepts: accept either fails with `nil, message` or waits;
-- either way it must not burn the CPU while it cannot proceed.  Then a
-- few files are freed and accept must work again.
local EMFILE_CHILD = [==[
local go = require "goro"
local net = go.net
local l = assert(net.listen("127.0.0.1:0"))
local addr = l:addr()
local clients, dialerr = {}, nil
for _ = 1, 1000 do
  local c, err = net.dial(addr, { timeout = 5 })
  if not c then dialerr = err; break end
  clients[#clients + 1] = c
end
assert(dialerr, "the table of files never filled")

-- accept with no file to spare, in a goroutine; meanwhile measure the CPU
-- time of the whole process over half a second
local result = go.chan(1)
go(function() result:send({ l:accept() }) end)
local cpu0 = os.clock()
go.after(0.5):recv()
local cpu = os.clock() - cpu0
local i, first = go.select{ result, default = true }
local how
if i then
  assert(first[1] == nil and type(first[2]) == "string", "accept with no file to spare succeeded")
  how = "failed: " .. first[2]
else
  how = "waited"
end

-- free some files: accept works again, as soon as the files are closed
-- (a server retries an accept that failed for want of files, as Go's
-- net/http does)
for k = 1, 8 do clients[k]:close() end
local s
if i then
  local deadline = go.now() + 10
  repeat
    local err
    s, err = l:accept()
    if not s then
      assert(err == first[2] and go.now() < deadline, err)
      go.sleep(0.01)
    end
  until s
else
  local j, got = go.select{ result, go.after(10) }
  assert(j == 1, "accept still waits after files were freed")
  s = assert(got[1], got[2])
end
s:close()
print(string.format("ok dial=%s accept %s cpu=%.3f", dialerr, how, cpu))
os.exit(0)
]==]

describe("go.net faults", function()
  H.check_goroutines(before_each, after_each)

  it("10,000 concurrent TCP connections on loopback", function()
    local n = H.scaled(10000)
    local limit = 30 * H.SLOW
    local hard = H.nofile_hard_limit()
    local status, out, err
    if hard >= 3 * n then
      status, out, err = H.run_child(pending, SCALE_CHILD, {},
        { ulimit_n = 3 * n, timeout = 180, args = { "both", n, limit } })
    elseif hard >= n + 1000 then
      -- not enough for both ends in one process: the dialing ends in a second one
      local nofile = math.min(hard, 2 * n)
      status, out, err = H.run_child(pending, SCALE_CHILD, {},
        { ulimit_n = nofile, timeout = 180, args = { "server", n, limit, nofile } })
    else
      pending(string.format("the hard limit of open files (%s) is too low for %d connections", hard, n))
    end
    assert.equal(0, status, H.describe_child(status, out, err))
    assert.equal(string.format("client up=%d first=nil\nserver most=%d clean=%d\n", n, n, n), out,
                 H.describe_child(status, out, err))
  end)

  it("EMFILE on accept neither spins nor crashes", function()
    local status, out, err = H.run_child(pending, EMFILE_CHILD, {}, { ulimit_n = 64 })
    assert.equal(0, status, H.describe_child(status, out, err))
    local cpu = tonumber(out:match("cpu=([%d.]+)"))
    assert.is_not_nil(cpu, out)
    -- half a second of wall time; a spinning accept would use all of it
    assert.is_true(cpu < 0.25, string.format("%.3f s of CPU in 0.5 s while accept could not proceed: %s", cpu, out))
    assert.matches("^ok dial=", out)
  end)

  for _, procs in ipairs(H.PROCS) do
    describe("with " .. procs .. " P", function()
      before_each(function() H.use_procs(procs) end)

      it("a peer reset mid-read returns nil, message", function()
        local c, s = H.tcp_pair()
        c:write("0123456789")
        -- s is mid-read: 10 of 100 bytes in
        local reading, reader = async(function() return s:readn(100) end)
        -- s writes far more than c will read: c's side is left with unread
        -- data, so that its close sends a reset (RST), not an EOF (FIN)
        local writing, writer = async(function() return s:write(("z"):rep(64 << 20)) end)
        assert.equal("z", c:readn(1))
        H.wait_state({ reader, writer }, "IO wait")
        c:close()
        local r = reading:recv()
        assert.is_nil(r[1])
        assert.equal("string", type(r[2]))
        assert.is_true(r[2] ~= "timeout", "the reset was not noticed: " .. r[2])
        assert.is_true(r[2]:find("reset", 1, true) ~= nil or r[2] == "closed", r[2])
        local w = writing:recv()
        assert.is_nil(w[1])
        assert.equal("string", type(w[2]))
        assert.is_true(w[2] ~= "timeout", "the reset was not noticed by the writer: " .. w[2])
        s:close()
      end)

      it("a slow reader does not block other connections", function()
        local l = assert(net.listen("127.0.0.1:0"))
        local slow = assert(net.dial(l:addr()))
        local slow_s = assert(l:accept())
        local fast = assert(net.dial(l:addr()))
        local fast_s = assert(l:accept())
        l:close()
        for _, c in ipairs({ slow, slow_s, fast, fast_s }) do c:settimeout(H.NET_LIMIT) end
        -- the writer to the slow reader blocks once the socket buffers fill
        local stuffing = async(function() return slow_s:write(("s"):rep(64 << 20)) end)
        go(function()   -- an echo server on the other connection
          while true do
            local line = fast_s:readline()
            if not line then break end
            fast_s:write(line .. "\n")
          end
          fast_s:close()
        end)
        for i = 1, 200 do
          assert(fast:write("line " .. i .. "\n"))
          assert.equal("line " .. i, (fast:readline()))
        end
        assert.is_nil(go.select{ stuffing, default = true }, "64 MiB went to a reader that reads nothing")
        fast:close()
        slow:close()   -- unread data: the blocked writer gets an error
        local w = stuffing:recv()
        assert.is_nil(w[1])
        assert.is_true(w[2] ~= "timeout", w[2])
        slow_s:close()
      end)

      describe("a goroutine blocked on a socket that another goroutine closes wakes with 'closed':", function()
        -- Each case: make() returns the object to close, and poke, which
        -- makes the blocking call return should close fail to wake it (the
        -- spec fails then, and leaves nothing blocked).
        local function conn(data)
          return function()
            local c, s = H.tcp_pair()
            if data then c:write(data) end
            return s, function() c:close() end, function() c:close() end
          end
        end
        local cases = {
          { "conn:read()", conn(), function(s) return s:read() end },
          { "conn:readline()", conn("no newline"), function(s) return s:readline() end },
          { "conn:readn()", conn("12345"), function(s) return s:readn(10) end },
          { "conn:write()", conn(), function(s) return s:write(("w"):rep(64 << 20)) end },
          { "l:accept()", function()
              local l = assert(net.listen("127.0.0.1:0"))
              local addr = l:addr()
              return l, function() local c = net.dial(addr); if c then c:close() end end
            end,
            function(l) return l:accept() end },
          { "u:recvfrom()", function()
              local u = assert(net.udp("127.0.0.1:0"))
              local addr = u:addr()
              return u, function()
                local v <close> = assert(net.udp("127.0.0.1:0"))
                v:sendto("poke", addr)
              end
            end,
            function(u) return u:recvfrom() end },
        }
        for _, case in ipairs(cases) do
          local name, make, call = case[1], case[2], case[3]
          it(name, function()
            local obj, poke, cleanup = make()
            local started = go.chan(1)
            local result, id = async(function() started:send(true); return call(obj) end)
            started:recv()
            H.wait_state(id, "IO wait")
            assert.is_nil(go.select{ result, default = true }, name .. " did not block")
            go(function() obj:close() end)
            local i, r = go.select{ result, go.after(H.NET_LIMIT) }
            if i ~= 1 then
              poke()
              result:recv()
              error(name .. " was not woken by close")
            end
            assert.is_nil(r[1])
            assert.equal("closed", r[2])
            if cleanup then cleanup() end
          end)
        end
      end)
    end)
  end
end)
