-- Shared helpers of the busted specs of the goro Lua module.
--
--   local H = require "spec.helper"
--
-- Specs run inside busted's own Lua state, where an error escaping a
-- goroutine would reach go.onerror's default handler and end the whole run
-- with status 2.  H.trap_errors installs a handler that records such errors
-- instead, so that a spec can report them as an ordinary failure.

local go = require "goro"

local H = {}

-- Workloads are divided by GORO_TEST_SLOW (set by make test-asan/test-tsan).
H.SLOW = math.max(1, tonumber(os.getenv("GORO_TEST_SLOW")) or 1)

function H.scaled(n)
  return math.max(1, n // H.SLOW)
end

-- The slack of the upper bounds of timing assertions, in seconds: an event
-- due after s seconds must happen before s + H.LATE.  Generous on purpose:
-- it catches a wait that never ends, not a slow machine.
H.LATE = 2 * H.SLOW

-- The numbers of Ps that scheduling-sensitive specs run with.
H.PROCS = { 1, 2 }

local function shquote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

local function slurp(path)
  local f = io.open(path, "rb")
  if not f then return "" end
  local s = f:read("a")
  f:close()
  return s
end

-- io.popen runs /bin/sh, which inherits LD_PRELOAD; with the TSan runtime
-- preloaded (make test-tsan) the shell itself crashes on this machine, so
-- child processes cannot be run then.
-- TSan also runs a signal handler only when the thread next enters its
-- runtime (an intercepted call); a busy loop in the uninstrumented lua5.4
-- never does, so the preemption signal is never acted on.
if (os.getenv("LD_PRELOAD") or ""):find("tsan", 1, true) then
  H.NO_CHILDREN = "child processes cannot run with the TSan runtime in LD_PRELOAD (/bin/sh crashes)"
  H.NO_PREEMPTION = "under TSan the preemption signal's handler is deferred until an intercepted call, which a busy Lua loop never makes"
end

-- Run Lua source `code` in a child lua5.4 (bounded by `timeout 60`), with
-- this process's package.cpath, so that `require "goro"` finds the same
-- module, and the extra environment variables in `env`.
-- Returns the exit status (124: timed out; 128+n: killed by signal n),
-- stdout and stderr.  Where children cannot run (H.NO_CHILDREN), the test
-- is marked pending through `pending`, busted's function, which the spec
-- passes in: H.run_child(pending, code, env).
--
-- `opts` (optional): `timeout` seconds instead of 60; `args`, a list of
-- arguments for the script (its `arg`); `ulimit_n`, the limit of open
-- files (RLIMIT_NOFILE) the child starts with, set by `ulimit -n` in an
-- `sh -c` around it (see H.nofile_hard_limit).
function H.run_child(pending, code, env, opts)
  if H.NO_CHILDREN then pending(H.NO_CHILDREN) end
  opts = opts or {}
  local src = os.tmpname()
  local errf = os.tmpname()
  local f = assert(io.open(src, "wb"))
  f:write(code)
  f:close()
  local vars = { "LUA_CPATH=" .. shquote(package.cpath) }
  for k, v in pairs(env or {}) do
    vars[#vars + 1] = k .. "=" .. shquote(v)
  end
  local lua = "lua5.4 " .. shquote(src)
  for _, a in ipairs(opts.args or {}) do lua = lua .. " " .. shquote(a) end
  if opts.ulimit_n then
    lua = string.format("sh -c %s", shquote(string.format("ulimit -n %d && exec %s", opts.ulimit_n, lua)))
  end
  local cmd = string.format("env %s timeout -k 5 %d %s 2>%s", table.concat(vars, " "),
                            opts.timeout or 60, lua, shquote(errf))
  local p = assert(io.popen(cmd, "r"))
  local out = p:read("a")
  local _, how, code_ = p:close()
  local err = slurp(errf)
  os.remove(src)
  os.remove(errf)
  local status = code_
  if how == "signal" then status = 128 + code_ end
  return status, out, err
end

-- The hard limit of open files (`ulimit -Hn`) a child could raise its soft
-- limit to: a number, or math.huge for "unlimited".
function H.nofile_hard_limit()
  local p = assert(io.popen("sh -c 'ulimit -Hn'", "r"))
  local s = p:read("a"):match("%S+")
  p:close()
  if s == "unlimited" then return math.huge end
  return tonumber(s) or 0
end

-- A compact description of a child's outcome, for assertion messages.
function H.describe_child(status, out, err)
  return string.format("status %s\n--- stdout:\n%s\n--- stderr:\n%s", tostring(status), out, err)
end

-- Specs of the deadlock rule (API.md, end of "Introspection"), each case
-- in a child lua5.4 with 1 and with 2 Ps: the sources in `fine` must end
-- with status 0 and no report, those in `deadlocks` with status 2 and
-- Go's message, before they print anything.  `prelude` goes before each
-- source; `opts` is H.run_child's.  Busted's functions come from the spec
-- file: bb = { describe = describe, it = it, pending = pending }.
H.DEADLOCK = "all goroutines are asleep - deadlock!"

function H.deadlock_cases(bb, title, prelude, fine, deadlocks, opts)
  local assert = require "luassert"
  if H.NO_CHILDREN then   -- every case is a child process
    bb.pending(title .. ": " .. H.NO_CHILDREN)
    return
  end
  for _, procs in ipairs(H.PROCS) do
    local env = { GORO_MAXPROCS = tostring(procs) }
    bb.describe(title .. " with " .. procs .. " P:", function()
      for _, name in ipairs(H.sorted_keys(fine)) do
        bb.it("no deadlock: " .. name, function()
          local status, out, err = H.run_child(bb.pending, prelude .. fine[name] .. "\nprint('ok')\n", env, opts)
          assert.equal(0, status, H.describe_child(status, out, err))
          assert.equal("ok\n", out)
          assert.not_matches("deadlock", err, 1, true)
        end)
      end
      for _, name in ipairs(H.sorted_keys(deadlocks)) do
        bb.it("deadlock: " .. name, function()
          local status, out, err = H.run_child(bb.pending, prelude .. deadlocks[name] .. "\nprint('not reached')\n", env, opts)
          assert.equal(2, status, H.describe_child(status, out, err))
          assert.matches(H.DEADLOCK, err, 1, true)
          assert.equal("", out)
        end)
      end
    end)
  end
end

-- Install a go.onerror handler that records every error escaping a
-- goroutine; returns the list it fills ({err=, traceback=, id=} each).
function H.trap_errors()
  local errs = {}
  go.onerror(function(err, traceback, id)
    errs[#errs + 1] = { err = err, traceback = traceback, id = id }
  end)
  return errs
end

-- Fail if any goroutine raised an error (recorded by H.trap_errors).
function H.assert_no_errors(errs)
  if #errs > 0 then
    local lines = {}
    for _, e in ipairs(errs) do
      lines[#lines + 1] = string.format("goroutine %s: %s\n%s", tostring(e.id),
                                        tostring(e.err), tostring(e.traceback))
    end
    error("errors escaped goroutines:\n" .. table.concat(lines, "\n"), 2)
  end
end

-- Inside a describe, given busted's before_each and after_each: trap the
-- errors of goroutines during each test; after it, wait for every
-- goroutine (nothing leaks into the next test) and fail on any error.
function H.check_goroutines(before_each, after_each)
  local errs
  before_each(function() errs = H.trap_errors() end)
  after_each(function()
    go.wait()
    H.assert_no_errors(errs)
  end)
end

-- Let the other goroutines run for a while.  It proves nothing: it passes
-- as well when they have not run yet.  To wait until a goroutine is
-- blocked, use H.wait_state.
function H.settle()
  for _ = 1, 50 do go.yield() end
end

-- H.wait_state(id, state [, seconds]): wait until goroutine `id` (0: the
-- main thread; or a list of ids, each in turn) is in `state` as
-- go.status reports it: "chan receive", "chan send", "select", "sleep",
-- "IO wait", "semacquire", "select (no cases)", "runnable", "running".
-- The runtime says so only once the goroutine is parked where a waker
-- finds it, which is the proof a test of blocking needs (a number of
-- yields only hopes so: it passes as well when the goroutine has not run
-- yet).  Polls with go.yield, then go.sleep; fails after `seconds`
-- (10 * H.SLOW) with the state it is in and the goroutine dump.
H.WAIT_STATE = 10 * H.SLOW

function H.wait_state(id, state, seconds)
  if type(id) == "table" then
    for _, each in ipairs(id) do H.wait_state(each, state, seconds) end
    return
  end
  local until_ = go.now() + (seconds or H.WAIT_STATE)
  local polls = 0
  while true do
    local now = go.status(id)
    if now == state then return end
    if now == nil then
      error(string.format("goroutine %d ended instead of waiting in %q", id, state), 2)
    end
    if go.now() > until_ then
      error(string.format("goroutine %d is in %q, not %q, after %g s; the goroutines:\n%s",
                          id, now, state, seconds or H.WAIT_STATE, go.stacks()), 2)
    end
    polls = polls + 1
    if polls < 100 then go.yield() else go.sleep(0.001) end
  end
end

-- The values of a call, with their count: H.pack(f()) keeps trailing nils.
function H.pack(...)
  return { n = select("#", ...), ... }
end

-- The keys of table t, sorted: specs built from a table of cases run in a
-- stable order, so that failures read the same from run to run.
function H.sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys)
  return keys
end

-- The safety net of network specs: every connection gets this timeout
-- (conn:settimeout), so that a spec that goes wrong fails with "timeout"
-- instead of leaving a goroutine blocked for go.wait() to hang on.
H.NET_LIMIT = 20 * H.SLOW

-- A connected pair of TCP connections on loopback: the dialer's end and
-- the accepted one, both with H.NET_LIMIT as their timeout.
function H.tcp_pair()
  local l = assert(go.net.listen("127.0.0.1:0"))
  local c = assert(go.net.dial(l:addr()))
  local s = assert(l:accept())
  l:close()
  c:settimeout(H.NET_LIMIT)
  s:settimeout(H.NET_LIMIT)
  return c, s
end

-- In a goroutine: f(...), its results sent on the returned channel as one
-- H.pack; the caller receives them when it wants them.  The goroutine's id
-- is the second result (for H.wait_state).
function H.async(f, ...)
  local out = go.chan(1)
  local args = H.pack(...)
  local id = go(function() out:send(H.pack(f(table.unpack(args, 1, args.n)))) end)
  return out, id
end

-- {======================================================
-- Processes in the background (the examples' specs)
-- =======================================================

-- H.spawn(pending, argv [, opts]) -> proc: start the program argv[1] with
-- the arguments argv[2..] in the background, bounded by `timeout -k 5`
-- (opts.timeout seconds, 60 by default), with this process's
-- package.cpath and the variables of opts.env; its stdout and stderr go to
-- files.  Where children cannot run (H.NO_CHILDREN) the test is pending.
--
-- Every wait on a proc polls with go.sleep, so goroutines of this process
-- (a server a child talks to) keep running meanwhile; every wait is
-- bounded, and fails the spec when its time is up.
--
--   proc:stdout(), proc:stderr()   what it printed so far
--   proc:wait_for(pattern [, s])   the captures of `pattern` in its stdout,
--                                  once they appear (error after s seconds)
--   proc:wait([s])                 its exit status, once it has ended
--   proc:kill()                    SIGTERM, then SIGKILL; waits for the end
local Proc = {}
Proc.__index = Proc

function H.spawn(pending, argv, opts)
  if H.NO_CHILDREN then pending(H.NO_CHILDREN) end
  opts = opts or {}
  local dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -m 700 " .. shquote(dir)))
  local vars = { "LUA_CPATH=" .. shquote(package.cpath) }
  for k, v in pairs(opts.env or {}) do vars[#vars + 1] = k .. "=" .. shquote(v) end
  local words = {}
  for i, a in ipairs(argv) do words[i] = shquote(a) end
  local p = setmetatable({ dir = dir, argv = argv }, Proc)
  -- The subshell records timeout's pid (the one to signal) and, when the
  -- program has ended, its status; `mv` makes the status file appear whole.
  local sh = string.format(
    "(env %s timeout -k 5 %d %s >%s/out 2>%s/err </dev/null & echo $! >%s/pid.tmp; mv %s/pid.tmp %s/pid; " ..
    "wait $!; echo $? >%s/status.tmp; mv %s/status.tmp %s/status) >/dev/null 2>&1 &",
    table.concat(vars, " "), opts.timeout or 60, table.concat(words, " "),
    dir, dir, dir, dir, dir, dir, dir, dir)
  assert(os.execute(sh))
  p.pid = tonumber(p:poll("pid", 10))
  return p
end

-- The content of the proc's file `name` once it exists, polled for up to
-- `seconds`; nil if it never appeared.
function Proc:poll(name, seconds)
  local until_ = go.now() + seconds
  repeat
    local f = io.open(self.dir .. "/" .. name, "rb")
    if f then
      local s = f:read("a")
      f:close()
      return s
    end
    go.sleep(0.01)
  until go.now() > until_
  return nil
end

function Proc:stdout() return slurp(self.dir .. "/out") end
function Proc:stderr() return slurp(self.dir .. "/err") end

function Proc:describe()
  return string.format("%s\n--- stdout:\n%s\n--- stderr:\n%s",
                       table.concat(self.argv, " "), self:stdout(), self:stderr())
end

function Proc:wait_for(pattern, seconds)
  local until_ = go.now() + (seconds or 10 * H.SLOW)
  repeat
    local found = H.pack(self:stdout():match(pattern))
    if found[1] ~= nil then return table.unpack(found, 1, found.n) end
    if self:poll("status", 0) then break end   -- it ended without printing it
    go.sleep(0.01)
  until go.now() > until_
  error(string.format("no %q in the output of %s", pattern, self:describe()), 2)
end

function Proc:wait(seconds)
  local status = self:poll("status", seconds or 60)
  if not status then
    error("still running: " .. self:describe(), 2)
  end
  self.status = tonumber(status)
  return self.status
end

function Proc:kill()
  if not self.status then
    os.execute("kill " .. self.pid .. " 2>/dev/null")
    if not self:poll("status", 5) then
      os.execute("kill -9 " .. self.pid .. " 2>/dev/null")
      self:poll("status", 5)
    end
    self.status = self.status or -1
  end
  os.execute("rm -rf " .. shquote(self.dir))
end

-- A shell command's status and output, run with LD_PRELOAD cleared: the
-- sanitizer runtimes preloaded for the module are not for curl or wrk.
-- `cmd` is a list of words, quoted here.
function H.command(cmd)
  local words = {}
  for i, a in ipairs(cmd) do words[i] = shquote(a) end
  local p = assert(io.popen("env -u LD_PRELOAD " .. table.concat(words, " ") .. " 2>&1", "r"))
  local out = p:read("a")
  local _, _, code = p:close()
  return code, out
end

-- }======================================================

-- Start the runtime afresh with `procs` Ps.  Only valid when no goroutine
-- is alive, which go.wait() ensures.
function H.use_procs(procs)
  go.wait()
  go.gomaxprocs(procs)
end

return H
