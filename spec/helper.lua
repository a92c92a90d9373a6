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
function H.run_child(pending, code, env)
  if H.NO_CHILDREN then pending(H.NO_CHILDREN) end
  local src = os.tmpname()
  local errf = os.tmpname()
  local f = assert(io.open(src, "wb"))
  f:write(code)
  f:close()
  local vars = { "LUA_CPATH=" .. shquote(package.cpath) }
  for k, v in pairs(env or {}) do
    vars[#vars + 1] = k .. "=" .. shquote(v)
  end
  local cmd = string.format("env %s timeout -k 5 60 lua5.4 %s 2>%s",
                            table.concat(vars, " "), shquote(src), shquote(errf))
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

-- A compact description of a child's outcome, for assertion messages.
function H.describe_child(status, out, err)
  return string.format("status %s\n--- stdout:\n%s\n--- stderr:\n%s", tostring(status), out, err)
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

-- Let the other goroutines run for a while (there are no timers yet).
function H.settle()
  for _ = 1, 50 do go.yield() end
end

-- The values of a call, with their count: H.pack(f()) keeps trailing nils.
function H.pack(...)
  return { n = select("#", ...), ... }
end

-- Start the runtime afresh with `procs` Ps.  Only valid when no goroutine
-- is alive, which go.wait() ensures.
function H.use_procs(procs)
  go.wait()
  go.gomaxprocs(procs)
end

return H
