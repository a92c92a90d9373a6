-- Preemption (API.md, "Goroutines"): Lua code that runs for more than
-- ~10 ms without blocking is interrupted so that others run, in a goroutine
-- and on the main thread.
--
-- A busy loop here is bounded: it stops either when it sees that the
-- others have run (what preemption makes happen within tens of ms) or
-- after LIMIT iterations (seconds of work).  The test asserts the former,
-- so it fails, rather than hangs, without preemption.  Loops that never
-- end (`while true do end`) run in a child process under `timeout 60`.
local go = require "goro"
local H = require "spec.helper"

local LIMIT = 1e8   -- a few seconds of spin_until on this machine's class of CPU

-- Where preemption cannot work (H.NO_PREEMPTION), say so instead of failing.
local function needs_preemption()
  if H.NO_PREEMPTION then pending(H.NO_PREEMPTION) end
end

-- Busy-loop until cond() holds or LIMIT iterations have passed; returns
-- whether cond() came to hold.
local function spin_until(cond)
  local i = 0
  while not cond() and i < LIMIT do i = i + 1 end
  return cond()
end

-- Where a busy loop runs: each calls f() there.  The running Lua thread
-- is then the goroutine's own, a coroutine, or one under a C call.
local places = {
  { "at the top level", function(f) f() end },
  { "inside a coroutine", function(f) coroutine.wrap(f)() end },
  { "inside a table.sort comparator", function(f)
    local called = false
    table.sort({ 2, 1 }, function(a, b)
      if not called then called = true; f() end
      return a < b
    end)
  end },
}

describe("preemption", function()
  H.check_goroutines(before_each, after_each)

  for _, procs in ipairs(H.PROCS) do
    describe("with " .. procs .. " P", function()
      before_each(function() H.use_procs(procs) end)

      for _, place in ipairs(places) do
        local where, run_in = place[1], place[2]

        it("a goroutine's busy loop " .. where .. " does not stop the others", function()
          needs_preemption()
          local others_done, saw = false, nil
          local wg = go.waitgroup()
          wg:add(2)
          go(function()
            run_in(function() saw = spin_until(function() return others_done end) end)
            wg:done()
          end)
          go(function()
            -- a little channel work of its own
            local ch = go.chan()
            go(function() for k = 1, 10 do ch:send(k) end end)
            for _ = 1, 10 do ch:recv() end
            others_done = true
            wg:done()
          end)
          wg:wait()
          assert.is_true(saw)
        end)

        it("the main thread's busy loop " .. where .. " lets waiting goroutines run", function()
          needs_preemption()
          local before = go.stats().preemptions
          local ran, saw = false, nil
          go(function() ran = true end)
          run_in(function() saw = spin_until(function() return ran end) end)
          assert.is_true(saw)
          assert.is_true(go.stats().preemptions > before,
                         "preemptions " .. before .. " -> " .. go.stats().preemptions)
        end)
      end

      it("go.stats().preemptions grows while goroutines spin", function()
        needs_preemption()
        -- Each spinner runs until it has seen every spinner start, which
        -- takes a preemption of each but the last.
        local before = go.stats().preemptions
        local n = 3
        local started, early = {}, {}
        local function all_started()
          for k = 1, n do if not started[k] then return false end end
          return true
        end
        local wg = go.waitgroup()
        wg:add(n)
        for s = 1, n do
          go(function()
            started[s] = true
            early[s] = spin_until(all_started)
            wg:done()
          end)
        end
        wg:wait()
        for s = 1, n do assert.is_true(early[s], "spinner " .. s .. " ran out its loop") end
        assert.is_true(go.stats().preemptions > before)
      end)

      it("a spinning goroutine does not keep a ping-pong from finishing", function()
        needs_preemption()
        local stop = false
        local spins_done = go.chan(1)
        go(function()
          spins_done:send(spin_until(function() return stop end))
        end)
        local ping, pong = go.chan(), go.chan()
        go(function() for v in ping:iter() do pong:send(v) end end)
        for k = 1, 20 do
          ping:send(k)
          assert.equal(k, (pong:recv()))
        end
        ping:close()
        stop = true
        assert.is_true(spins_done:recv())
      end)

      it("`while true do end` in a goroutine does not stop the others (child)", function()
        local status, out, err = H.run_child(pending, [[
          local go = require "goro"
          local p0 = go.stats().preemptions
          go(function() while true do end end)
          go(function() while true do end end)
          local ping, pong = go.chan(), go.chan()
          go(function() for v in ping:iter() do pong:send(v) end end)
          for k = 1, 20 do ping:send(k); assert(pong:recv() == k) end
          print("ok", go.stats().preemptions > p0)
          io.stdout:flush()
          os.exit(0)   -- the spinners never end: do not wait for them
        ]], { GORO_MAXPROCS = tostring(procs) })
        assert.equal(0, status, H.describe_child(status, out, err))
        assert.equal("ok\ttrue\n", out)
      end)

      it("`while true do end` on the main thread lets goroutines run (child)", function()
        local status, out, err = H.run_child(pending, [[
          local go = require "goro"
          go(function()
            local ch = go.chan()
            go(function() ch:send("from a goroutine") end)
            print((ch:recv()))
            io.stdout:flush()
            os.exit(0)
          end)
          while true do end
        ]], { GORO_MAXPROCS = tostring(procs) })
        assert.equal(0, status, H.describe_child(status, out, err))
        assert.equal("from a goroutine\n", out)
      end)
    end)
  end
end)

describe("preemption, slice after slice", function()
  H.check_goroutines(before_each, after_each)
  before_each(function() H.use_procs(1) end)

  -- Two goroutines on 1 P hand a turn to each other by busy-waiting only:
  -- every hand-off takes a preemption.  A preemption that left its thread
  -- without the hook (a signal landing while the hook put back the one it
  -- displaced) would leave the spinner running out its LIMIT.  Each keeps
  -- a count hook of its own, which must survive every preemption.
  it("keeps preempting the same goroutines, and puts back their own hooks", function()
    needs_preemption()
    local ROUNDS = H.scaled(40)
    local turn, missed = 1, 0
    local calls = { 0, 0 }
    local wg = go.waitgroup()
    wg:add(2)
    for me = 1, 2 do
      go(function()
        local function hook() calls[me] = calls[me] + 1 end
        debug.sethook(hook, "", 1000)
        for _ = 1, ROUNDS do
          if not spin_until(function() return turn == me end) then missed = missed + 1 end
          turn = 3 - me
        end
        assert(debug.gethook() == hook, "the goroutine's own hook was lost")
        debug.sethook()
        wg:done()
      end)
    end
    wg:wait()
    assert.equal(0, missed)
    assert.is_true(calls[1] > 0 and calls[2] > 0)
  end)
end)

-- {======================================================
-- SIGURG is shared with the host
-- =======================================================

-- A host's own SIGURG handler, installed before goro (as a Go c-shared
-- library's would be): a tiny C module, built here, that counts the
-- SIGURGs it gets and sends them to a thread of the process with
-- pthread_kill, i.e. SI_TKILL from our own pid, as goro's own are sent.
local URG_C = [[
#include <pthread.h>
#include <signal.h>
#include <lua.h>
#include <lauxlib.h>

static volatile sig_atomic_t count;
static pthread_t mainthread;

static void on_urg(int sig) { (void)sig; count++; }

static int l_install(lua_State *L) {
  struct sigaction sa = {0};
  sa.sa_handler = on_urg;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  mainthread = pthread_self();
  lua_pushboolean(L, sigaction(SIGURG, &sa, NULL) == 0);
  return 1;
}

/* n signals to this thread, each delivered before pthread_kill returns */
static int l_raise(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  for (lua_Integer i = 0; i < n; i++)
    pthread_kill(pthread_self(), SIGURG);
  return 0;
}

static int l_killmain(lua_State *L) {
  (void)L;
  pthread_kill(mainthread, SIGURG);
  return 0;
}

static int l_count(lua_State *L) {
  lua_pushinteger(L, count);
  return 1;
}

int luaopen_urg(lua_State *L) {
  static const luaL_Reg f[] = {
    {"install", l_install}, {"raise", l_raise}, {"killmain", l_killmain},
    {"count", l_count}, {NULL, NULL}
  };
  luaL_newlib(L, f);
  return 1;
}
]]

-- Build the module; returns its path, or nil and why.
local function build_urg()
  local dir = os.tmpname()
  os.remove(dir)
  assert(H.command({ "mkdir", "-p", dir }) == 0)
  local src, so = dir .. "/urg.c", dir .. "/urg.so"
  local f = assert(io.open(src, "wb"))
  f:write(URG_C)
  f:close()
  local code, out = H.command({ "cc", "-shared", "-fPIC", "-O1", "-pthread",
                                "-I/usr/include/lua5.4", src, "-o", so })
  if code ~= 0 then return nil, out end
  return so, dir
end

describe("a host's own SIGURG handler, installed before goro", function()
  local so, dir
  setup(function()
    if not H.NO_CHILDREN then so, dir = build_urg() end
  end)
  teardown(function() if so then H.command({ "rm", "-rf", dir }) end end)

  it("still gets the process's own SIGURGs, on the main thread and in goroutines", function()
    if H.NO_CHILDREN then pending(H.NO_CHILDREN) end
    assert(so, dir)
    local status, out, err = H.run_child(pending, [[
      local urg = assert(package.loadlib(]] .. string.format("%q", so) .. [[, "luaopen_urg"))()
      assert(urg.install())
      local go = require "goro"
      urg.raise(100)
      print("main", urg.count() >= 90)   -- a few may meet a request of goro's
      local before = urg.count()
      local done = go.chan(1)
      go(function() urg.raise(100); done:send(urg.count() - before) end)
      print("goroutine", done:recv() >= 90)
      -- a goroutine signals the main thread while it waits without the
      -- token, one signal at a time (pending ones would merge), and sees
      -- each counted (a bounded wait for the count)
      go(function()
        local arrived = 0
        for i = 1, 10 do
          local before = urg.count()
          urg.killmain()
          for _ = 1, 1e7 do
            if urg.count() > before then arrived = arrived + 1; break end
          end
        end
        done:send(arrived)
      end)
      print("main waiting", done:recv() >= 9)
    ]])
    assert.equal(0, status, H.describe_child(status, out, err))
    assert.equal("main\ttrue\ngoroutine\ttrue\nmain waiting\ttrue\n", out)
  end)

  it("does not stop goro's preemption, of goroutines and of the main thread", function()
    if H.NO_CHILDREN then pending(H.NO_CHILDREN) end
    assert(so, dir)
    local status, out, err = H.run_child(pending, [[
      local urg = assert(package.loadlib(]] .. string.format("%q", so) .. [[, "luaopen_urg"))()
      assert(urg.install())
      local go = require "goro"
      local LIMIT = 1e8
      local function spin_until(cond)
        local i = 0
        while not cond() and i < LIMIT do i = i + 1 end
        return cond()
      end
      -- the main thread spins until a goroutine has run: only its
      -- preemption lets one run
      local ran = false
      go(function() ran = true end)
      print("main preempted", spin_until(function() return ran end))
      -- a goroutine spins until another has run, with 1 P
      local other, saw = false, go.chan(1)
      go(function() saw:send(spin_until(function() return other end)) end)
      go(function() other = true end)
      print("goroutine preempted", (saw:recv()))
    ]], { GORO_MAXPROCS = "1" })
    assert.equal(0, status, H.describe_child(status, out, err))
    assert.equal("main preempted\ttrue\ngoroutine preempted\ttrue\n", out)
  end)
end)

-- }======================================================
