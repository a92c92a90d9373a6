-- Errors: bad arguments raise errors that name the argument and the
-- function; an error escaping a goroutine goes to go.onerror, whose default
-- prints it with a traceback and exits with status 2 (API.md, "Goroutines").
local go = require "goro"
local H = require "spec.helper"

-- The message of the error that f raises; fails if it does not raise.
local function error_of(f, ...)
  local ok, err = pcall(f, ...)
  assert.is_false(ok, "expected an error")
  return tostring(err)
end

-- Lua may name the function 'send' or, found through package.loaded,
-- 'goro.send'-like names: accept a qualified name too.
local function assert_bad_arg(n, fname, f)
  local msg = error_of(f)
  assert.is_truthy(msg:find("bad argument #" .. n .. " to '", 1, true)
                   and msg:find("[%.' :]" .. fname .. "'"),
                   "expected bad argument #" .. n .. " to '" .. fname .. "', got: " .. msg)
end

describe("bad arguments", function()
  local ch = go.chan()
  local wg, mu = go.waitgroup(), go.mutex()
  H.check_goroutines(before_each, after_each)

  it("ch:send(nil) and ch:send() name argument #1 of 'send'", function()
    assert_bad_arg(1, "send", function() ch:send(nil) end)
    assert_bad_arg(1, "send", function() ch:send() end)
  end)

  it("channel methods called on something else name their self", function()
    assert_bad_arg(1, "send", function() ch.send(42, 1) end)
    assert_bad_arg(1, "recv", function() ch.recv({}) end)
    assert_bad_arg(1, "close", function() ch.close("x") end)
    assert_bad_arg(1, "len", function() ch.len(nil) end)
    assert_bad_arg(1, "cap", function() ch.cap(1.5) end)
    assert_bad_arg(1, "iter", function() ch.iter(true) end)
  end)

  it("go.chan with a capacity that is not a non-negative integer", function()
    assert_bad_arg(1, "chan", function() go.chan("many") end)
    assert_bad_arg(1, "chan", function() go.chan(-1) end)
    assert_bad_arg(1, "chan", function() go.chan(1.5) end)
  end)

  it("go.select with a bad case table or case", function()
    assert_bad_arg(1, "select", function() go.select(42) end)
    assert_bad_arg(1, "select", function() go.select() end)
    assert_bad_arg(1, "select", function() go.select{ 42 } end)
    assert_bad_arg(1, "select", function() go.select{ "chan" } end)
    assert_bad_arg(1, "select", function() go.select{ { 42, 1 } } end)
    assert_bad_arg(1, "select", function() go.select{ { ch } } end)        -- send of nil
    assert_bad_arg(1, "select", function() go.select{ { ch, nil } } end)
  end)

  it("a bad case raises before any case is performed", function()
    local a = go.chan(1)
    assert.has_error(function() go.select{ { a, "v" }, 42 } end)
    assert.equal(0, #a)
  end)

  it("go and go.spawn with something not callable", function()
    assert_bad_arg(1, "spawn", function() go.spawn(42) end)
    assert_bad_arg(1, "spawn", function() go.spawn() end)
    local msg = error_of(function() go("not a function") end)
    assert.matches("bad argument #1", msg, 1, true)
    assert.equal(0, go.numgoroutine())
  end)

  it("waitgroup and mutex methods", function()
    assert_bad_arg(1, "add", function() wg:add("x") end)
    assert_bad_arg(1, "add", function() wg.add({}, 1) end)
    assert_bad_arg(1, "wait", function() wg.wait(1) end)
    assert_bad_arg(1, "done", function() wg.done(ch) end)
    assert_bad_arg(1, "lock", function() mu.lock(42) end)
    assert_bad_arg(1, "unlock", function() mu.unlock(wg) end)
    assert_bad_arg(1, "trylock", function() mu.trylock() end)
  end)

  it("go.onerror and go.gomaxprocs", function()
    assert_bad_arg(1, "onerror", function() go.onerror(42) end)
    assert_bad_arg(1, "gomaxprocs", function() go.gomaxprocs("x") end)
  end)

  it("a bad argument inside a goroutine can be caught there", function()
    local out = go.chan(1)
    go(function() out:send(error_of(function() ch:send(nil) end)) end)
    local msg = out:recv()
    assert.matches("bad argument #1 to '", msg, 1, true)
  end)
end)

describe("go.onerror", function()
  after_each(function()
    go.wait()
    H.trap_errors()   -- never leave busted with the exiting default
  end)

  it("receives the error, a traceback and the goroutine's id", function()
    local got = go.chan(1)
    go.onerror(function(err, tb, id) got:send({ err = err, tb = tb, id = id }) end)
    local function explode_here() error("kaboom") end
    local id = go(function() explode_here() end)
    local r = got:recv()
    assert.equal("string", type(r.err))
    assert.matches("kaboom", r.err, 1, true)
    assert.matches("errors_spec.lua:%d+:", r.err)   -- position, as error() adds it
    assert.equal("string", type(r.tb))
    assert.matches("stack traceback:", r.tb, 1, true)
    assert.matches("explode_here", r.tb, 1, true)
    assert.equal(id, r.id)
  end)

  it("gets the error value as raised: a string without position", function()
    local got = go.chan(1)
    go.onerror(function(err) got:send(err) end)
    go(function() error("plain", 0) end)
    assert.equal("plain", (got:recv()))
  end)

  it("gets the error value as raised: a table stays the same table", function()
    local got = go.chan(1)
    go.onerror(function(err) got:send(err) end)
    local e = setmetatable({ code = 7 }, { __tostring = function() return "E7" end })
    go(function() error(e) end)
    local r = got:recv()
    assert.is_true(rawequal(e, r))
    assert.equal(7, r.code)
  end)

  it("gets other error values as raised", function()
    local got = go.chan(3)
    go.onerror(function(err) got:send({ err }) end)
    go(function() error(42) end)
    assert.same({ 42 }, (got:recv()))
    go(function() error(false) end)
    assert.same({ false }, (got:recv()))
  end)

  it("is called for an error raised after the goroutine blocked", function()
    local got, ch = go.chan(1), go.chan()
    go.onerror(function(err, _, id) got:send({ err, id }) end)
    local id = go(function()
      ch:recv()
      error("after recv", 0)
    end)
    ch:send(1)
    assert.same({ "after recv", id }, (got:recv()))
  end)

  it("is called for an error raised inside a coroutine and a C callback", function()
    local got = go.chan(2)
    go.onerror(function(err, _, id) got:send({ err, id }) end)
    local ch = go.chan()
    local id1 = go(function()
      coroutine.wrap(function()
        ch:recv()
        error({ "in coroutine" })   -- a table passes coroutine.wrap unchanged
      end)()
    end)
    local id2 = go(function()
      table.sort({ 1, 2, 3 }, function(a, b)
        ch:recv()
        error("in comparator", 0)
      end)
    end)
    ch:send(1)
    ch:send(2)
    local r = {}
    for _ = 1, 2 do
      local e = got:recv()
      r[e[2]] = e[1]
    end
    assert.same({ "in coroutine" }, r[id1])
    assert.equal("in comparator", r[id2])
  end)

  it("other goroutines go on after one fails", function()
    local failed = go.chan(1)
    go.onerror(function(err) failed:send(err) end)
    local ch = go.chan()
    go(function() error("one down", 0) end)
    go(function() for i = 1, 10 do ch:send(i) end; ch:close() end)
    local sum = 0
    for v in ch:iter() do sum = sum + v end
    assert.equal(55, sum)
    assert.equal("one down", (failed:recv()))
  end)

  it("an error caught by pcall inside the goroutine does not reach it", function()
    local calls = 0
    go.onerror(function() calls = calls + 1 end)
    local out = go.chan(1)
    go(function()
      local ok, err = pcall(error, "caught", 0)
      out:send({ ok, err })
    end)
    assert.same({ false, "caught" }, (out:recv()))
    go.wait()
    assert.equal(0, calls)
  end)

  it("the latest handler is the one called", function()
    local first, second = 0, 0
    go.onerror(function() first = first + 1 end)
    go.onerror(function() second = second + 1 end)
    go(function() error("x") end)
    go.wait()
    assert.equal(0, first)
    assert.equal(1, second)
  end)
end)

describe("the default go.onerror", function()
  it("prints 'goroutine <id> failed: <err>' and a traceback, and exits 2", function()
    local status, out, err = H.run_child(pending, [[
      local go = require "goro"
      io.stdout:write("before\n")
      go(function() error("kaboom", 0) end)
      go.wait()
      print("not reached")
    ]])
    assert.equal(2, status, H.describe_child(status, out, err))
    assert.matches("goroutine 1 failed: kaboom", err, 1, true)
    assert.matches("stack traceback:", err, 1, true)
    assert.not_matches("not reached", out, 1, true)
  end)

  it("names the goroutine that failed", function()
    local status, out, err = H.run_child(pending, [[
      local go = require "goro"
      local ch = go.chan()
      go(function() ch:recv() end)   -- 1
      go(function() ch:recv() end)   -- 2
      go(function() error("third fails") end)   -- 3
      go.wait()
    ]])
    assert.equal(2, status, H.describe_child(status, out, err))
    assert.matches("goroutine 3 failed: [^\n]*third fails", err)
    assert.matches("stack traceback:", err, 1, true)
    -- a failure, not a deadlock
    assert.not_matches("deadlock", err, 1, true)
  end)

  it("ends the process even while the main thread is blocked", function()
    local status, out, err = H.run_child(pending, [[
      local go = require "goro"
      local never = go.chan()
      go(function() go.yield(); error("boom", 0) end)
      never:recv()
    ]])
    assert.equal(2, status, H.describe_child(status, out, err))
    assert.matches("goroutine 1 failed: boom", err, 1, true)
    assert.not_matches("deadlock", err, 1, true)
  end)

  it("ends the process while the main thread runs Lua code", function()
    -- The main thread spins (bounded) until preempted; the goroutine then
    -- runs and fails, which must end the process with status 2.
    local status, out, err = H.run_child(pending, [[
      local go = require "goro"
      go(function() error("boom", 0) end)
      for i = 1, 3e9 do end
      print("not reached")
    ]])
    assert.equal(2, status, H.describe_child(status, out, err))
    assert.matches("goroutine 1 failed: boom", err, 1, true)
  end)
end)

-- {======================================================
-- Errors where Lua has no protected call to catch them
-- =======================================================

-- ASan and TSan reserve terabytes of address space for their shadow
-- memory: a process of theirs cannot start under `ulimit -v`.
local SANITIZED = ((os.getenv("LD_PRELOAD") or "") .. (os.getenv("GORO_TEST_BUILD") or "")):find("san", 1, true)

local function shquote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Run Lua source `code` in a child lua5.4 whose address space is limited
-- to `kb` KiB (`ulimit -v`), bounded by `timeout 60`.  Returns the exit
-- status, stdout and stderr, as H.run_child.
local function run_limited(code, kb)
  if H.NO_CHILDREN then pending(H.NO_CHILDREN) end
  if SANITIZED then pending("ulimit -v: the sanitizers' shadow memory does not fit in it") end
  local src, errf = os.tmpname(), os.tmpname()
  local f = assert(io.open(src, "wb"))
  f:write(code)
  f:close()
  local cmd = string.format("env LUA_CPATH=%s timeout -k 5 60 sh -c %s 2>%s",
    shquote(package.cpath),
    shquote(string.format("ulimit -v %d && exec lua5.4 %s", kb, shquote(src))),
    shquote(errf))
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local _, how, status = p:close()
  f = io.open(errf, "rb")
  local err = f and f:read("a") or ""
  if f then f:close() end
  os.remove(src)
  os.remove(errf)
  if how == "signal" then status = 128 + status end
  return status, out, err
end

-- A goroutine that fills memory until Lua's allocator fails.
local FILL = [[
  go(function()
    local t = {}
    for i = 1, math.huge do t[i] = { i } end
  end)
]]

describe("a goroutine out of memory", function()
  it("fails like any goroutine: 'goroutine N failed: not enough memory', status 2", function()
    local status, out, err = run_limited([[
      local go = require "goro"
    ]] .. FILL .. [[
      -- The error must not land in the main thread's pcall.
      local ok, e = pcall(function() while true do go.yield() end end)
      print("main's pcall caught: " .. tostring(e))
    ]], 150000)
    assert.equal(2, status, H.describe_child(status, out, err))
    assert.matches("goroutine 1 failed: not enough memory", err, 1, true)
    assert.not_matches("main's pcall", out, 1, true)
  end)

  it("reaches go.onerror, and the main thread goes on", function()
    local status, out, err = run_limited([[
      local go = require "goro"
      local failed = go.chan(1)
      go.onerror(function(e, tb, id)
        failed:send(string.format("goroutine %d: %s (%s)", id, tostring(e), type(tb)))
      end)
    ]] .. FILL .. [[
      local ok, got = pcall(failed.recv, failed)
      print(ok, got)
    ]], 150000)
    assert.equal(0, status, H.describe_child(status, out, err))
    assert.equal("true\tgoroutine 1: not enough memory (string)\n", out)
  end)
end)

-- The same where `ulimit -v` cannot be used (ASan): a C module, built
-- here, that puts a limit on the Lua state's allocator.
local MEMLIMIT_C = [[
#include <lua.h>
#include <lauxlib.h>

static lua_Alloc base;
static void *baseud;
static long long used, limit;

static void *limited(void *ud, void *ptr, size_t osize, size_t nsize) {
  (void)ud;
  long long old = ptr ? (long long)osize : 0;
  if ((long long)nsize > old && used + ((long long)nsize - old) > limit)
    return NULL;
  void *p = base(baseud, ptr, osize, nsize);
  if (nsize == 0)
    used -= old;
  else if (p)
    used += (long long)nsize - old;
  return p;
}

/* limit(bytes): from now on, at most `bytes` more than now */
static int l_limit(lua_State *L) {
  limit = (long long)luaL_checkinteger(L, 1);
  if (base == NULL) {
    base = lua_getallocf(L, &baseud);
    lua_setallocf(L, limited, NULL);
  }
  return 0;
}

int luaopen_memlimit(lua_State *L) {
  lua_newtable(L);
  lua_pushcfunction(L, l_limit);
  lua_setfield(L, -2, "limit");
  return 1;
}
]]

describe("a goroutine out of memory (a limited allocator)", function()
  local so, dir
  setup(function()
    if H.NO_CHILDREN then return end
    dir = os.tmpname()
    os.remove(dir)
    assert(H.command({ "mkdir", "-p", dir }) == 0)
    local f = assert(io.open(dir .. "/memlimit.c", "wb"))
    f:write(MEMLIMIT_C)
    f:close()
    -- nodelete: the allocator must outlive the dlclose of lua_close
    local code, out = H.command({ "cc", "-shared", "-fPIC", "-O1", "-Wl,-z,nodelete", "-I/usr/include/lua5.4",
                                  dir .. "/memlimit.c", "-o", dir .. "/memlimit.so" })
    assert(code == 0, out)
    so = dir .. "/memlimit.so"
  end)
  teardown(function() if dir then H.command({ "rm", "-rf", dir }) end end)

  local function prelude()
    return "local memlimit = assert(package.loadlib(" .. string.format("%q", so) ..
           ", 'luaopen_memlimit'))()\n"
  end

  it("fails like any goroutine: 'goroutine N failed: not enough memory', status 2", function()
    local status, out, err = H.run_child(pending, prelude() .. [[
      local go = require "goro"
      memlimit.limit(16 * 2^20)
    ]] .. FILL .. [[
      local ok, e = pcall(function() while true do go.yield() end end)
      print("main's pcall caught: " .. tostring(e))
    ]])
    assert.equal(2, status, H.describe_child(status, out, err))
    assert.matches("goroutine 1 failed: not enough memory", err, 1, true)
    assert.not_matches("main's pcall", out, 1, true)
  end)

  it("reaches go.onerror, many times over, and the main thread goes on", function()
    local status, out, err = H.run_child(pending, prelude() .. [[
      local go = require "goro"
      local failed = go.chan(1)
      go.onerror(function(e, tb, id) failed:send(tostring(e)) end)
      memlimit.limit(8 * 2^20)
      local n = 0
      for round = 1, 5 do
    ]] .. FILL .. [[
        if failed:recv() == "not enough memory" then n = n + 1 end
      end
      print(n)
    ]])
    assert.equal(0, status, H.describe_child(status, out, err))
    assert.equal("5\n", out)
  end)
end)

describe("the default go.onerror, given an error whose __tostring raises", function()
  it("prints the traceback anyway, with the reason", function()
    local status, out, err = H.run_child(pending, [[
      local go = require "goro"
      local bad = setmetatable({}, { __tostring = function() error("tostring fails", 0) end })
      local function raiser() error(bad) end
      go(function() raiser() end)
      go.wait()
      print("not reached")
    ]])
    assert.equal(2, status, H.describe_child(status, out, err))
    assert.matches("goroutine 1 failed: (error object is a table value; its __tostring raised: tostring fails)", err, 1, true)
    assert.matches("stack traceback:", err, 1, true)
    assert.matches("in upvalue 'raiser'", err, 1, true)
    assert.not_matches("go.onerror handler", err, 1, true)
  end)
end)

-- }======================================================


-- {======================================================
-- Finalisers cannot block
-- =======================================================

-- Lua stops its collector while a finaliser runs: one that blocked would
-- stop collection for every goroutine.  It gets an error instead.
describe("a finaliser that would block", function()
  it("raises 'cannot block in a finaliser', in a goroutine and on the main thread", function()
    local status, out, err = H.run_child(pending, [[
      local go = require "goro"
      local never = go.chan()
      local out = go.chan(1)
      go(function()
        setmetatable({}, { __gc = function()
          out:send(select(2, pcall(never.recv, never)))   -- buffered: no wait
        end })
        collectgarbage()
      end)
      print((out:recv()))
      setmetatable({}, { __gc = function()
        print(select(2, pcall(never.send, never, 1)))
        print(select(2, pcall(go.select, { never, {never, 2} })))
        print(select(2, pcall(go.sleep, 0.01)))
      end })
      collectgarbage()
      print("done")
    ]])
    assert.equal(0, status, H.describe_child(status, out, err))
    assert.equal(string.rep("goro: cannot block in a finaliser\n", 4) .. "done\n", out)
  end)

  it("turns, uncaught, into Lua's warning 'error in __gc' and the program goes on", function()
    local status, out, err = H.run_child(pending, [[
      local go = require "goro"
      warn("@on")
      local never = go.chan()
      setmetatable({}, { __gc = function() never:recv() end })
      collectgarbage()
      local done = go.chan()
      go(function()
        setmetatable({}, { __gc = function() never:recv() end })
        collectgarbage()
        done:send(true)
      end)
      done:recv()
      print("went on")
    ]])
    assert.equal(0, status, H.describe_child(status, out, err))
    assert.equal("went on\n", out)
    local _, n = err:gsub("Lua warning: error in __gc [^\n]*goro: cannot block in a finaliser", "")
    assert.equal(2, n, err)
  end)

  it("may still do what does not wait: a buffered send, a try, go.yield", function()
    local status, out, err = H.run_child(pending, [[
      local go = require "goro"
      local box = go.chan(1)
      local mu = go.mutex()
      setmetatable({}, { __gc = function()
        box:send("sent")
        go.yield()
        print(mu:trylock(), go.select{ go.chan(), default = true })
      end })
      collectgarbage()
      print((box:recv()))
    ]])
    assert.equal(0, status, H.describe_child(status, out, err))
    assert.equal("true\tnil\nsent\n", out)
  end)

  it("at lua_close raises 'cannot block while the Lua state closes'", function()
    local status, out, err = H.run_child(pending, [[
      local go = require "goro"
      local never = go.chan()
      go(function() never:recv() end)   -- parked at the end: dropped
      setmetatable({}, { __gc = function() print(select(2, pcall(never.recv, never))) end })
    ]])
    assert.equal(0, status, H.describe_child(status, out, err))
    assert.equal("goro: cannot block while the Lua state closes\n", out)
  end)
end)

-- }======================================================
