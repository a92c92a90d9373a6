-- bench/lua/harness.lua — what goro_bench.lua and coro_bench.lua share
-- besides the workloads (workloads.lua): the command line (-w W -n N
-- -procs P, -list), the RESULT line, the wall clock, VmRSS and the failure
-- exit.  Speaks the protocol of bench/run.sh,
-- the same as bench/c/bench.c and bench/go/main.go.

local M = {}

M.progname = "bench_lua"

-- A failed self-check: a message on stderr, exit status 1 (as bench.c).
function M.fail(fmt, ...)
  io.stderr:write(M.progname, ": ", string.format(fmt, ...), "\n")
  io.stderr:flush()
  os.exit(1)
end

-- {======================================================
-- Wall clock
-- =======================================================
--
-- Stock Lua 5.4 has no sub-second wall clock (os.clock is CPU time, summed
-- over all threads; os.time has 1 s steps).  The default clock is GNU
-- `date +%s%N` through io.popen: nanosecond resolution, one process spawn
-- per reading.  The spawn sits inside the measured interval: from the
-- child's clock read to popen's return at the start, from the call to the
-- child's clock read at the end.  Those two parts add up to what two
-- back-to-back readings measure, so the harness measures that (best of 3)
-- once and subtracts it.  What is left is well under a millisecond against
-- runs of 0.1 s and more at the default N (tens of ms at BENCH_SCALE=0.1).
-- A program with a better clock (goro's go.now, once it exists) installs
-- it with M.use_clock.

local function date_ns()
  local p = io.popen("date +%s%N")
  local s = p and p:read("l")
  if p then p:close() end
  local v = s and math.tointeger(tonumber(s))
  if not v then M.fail("clock: `date +%%s%%N` printed %s", tostring(s)) end
  return v
end

local clock, overhead = date_ns, nil

-- fn() -> nanoseconds (integer or float) on a clock without spawn cost.
function M.use_clock(fn)
  clock, overhead = fn, 0
end

-- The start of a measured interval.
function M.start()
  if not overhead then
    local best
    for _ = 1, 3 do
      local a = clock()
      local d = clock() - a
      if not best or d < best then best = d end
    end
    overhead = best
  end
  return clock()
end

-- Nanoseconds per operation since start, for n operations.
function M.per_op(start, n)
  local d = clock() - start - overhead
  if d < 0 then d = 0 end
  return d / n
end

-- }======================================================

-- Resident set size in bytes, VmRSS of /proc/self/status (as bench.c and
-- main.go read it).
function M.vmrss()
  local f, err = io.open("/proc/self/status")
  if not f then M.fail("W5: %s", err) end
  for line in f:lines() do
    local kb = line:match("^VmRSS:%s*(%d+)")
    if kb then
      f:close()
      return math.tointeger(tonumber(kb)) * 1024
    end
  end
  f:close()
  M.fail("W5: no VmRSS in /proc/self/status")
end

-- Parse argv, run one workload of workloads.lua, print
-- "RESULT <workload> <value> <unit>".  init(procs) -> go: the runtime the
-- workload runs on (procs 0: its default), called after the command line is
-- read, so that -list works without it.
function M.main(progname, argv, init)
  local workloads = require "workloads"
  M.progname = progname
  local function usage()
    io.stderr:write("usage: ", progname, " -w WORKLOAD [-n N] [-procs P]\n",
                    "       ", progname, " -list\n")
    os.exit(2)
  end
  local w, n, procs = nil, 0, 0
  local i = 1
  while i <= #argv do
    local a = argv[i]:gsub("^%-%-", "-")   -- accept --flag, like Go's flag
    local v = argv[i + 1]
    if a == "-list" then
      for _, wl in ipairs(workloads) do print(wl.name) end
      return
    elseif a == "-w" and v then
      w = v
    elseif a == "-n" and v then
      n = math.tointeger(tonumber(v)) or usage()
    elseif a == "-procs" and v then
      procs = math.tointeger(tonumber(v)) or usage()
    else
      usage()
    end
    i = i + 2
  end
  if not w then usage() end
  local wl
  for _, x in ipairs(workloads) do
    if x.name == w then wl = x end
  end
  if not wl then
    io.stderr:write(progname, ": unknown or unsupported workload \"", w,
                    "\" (try -list)\n")
    os.exit(2)
  end
  if n <= 0 then n = wl.n end
  local go = init(procs)
  local value, unit = wl.run(go, n)
  io.write(string.format("RESULT %s %.1f %s\n", wl.name, value, unit))
  io.flush()
end

return M
