-- One batch of the fuzz spec (spec/fuzz_spec.lua), in a child lua5.4:
--
--   lua5.4 spec/fuzz_child.lua SEED BATCH CALLS LOGFILE
--
-- CALLS calls of goro's Lua API, chosen from math.random seeded with
-- (SEED, BATCH): every function of `go`, `go.net` and the wrapped
-- `coroutine`, every method and metamethod of every goro object kind (found
-- in the registry's "goro.*" metatables, so that a new one is fuzzed
-- too), each with random arguments and a random `self`: every object kind,
-- closed ones, io.stdout and other libraries' userdata, nil, booleans,
-- numbers (NaN, infinities, huge, negative), strings, tables with hostile
-- metatables, functions, threads (a parked goroutine's among them).
--
-- The contract under test: a Lua error or `nil, message`, never a crash, a
-- hang or a sanitizer report.  Each call is logged (one line, unbuffered)
-- before it is made and after it returns, so that the parent can name the
-- call that was running when the process died.  The last line is "DONE".
--
-- Calls that may block run where a blocked call harms nobody: in a
-- goroutine, which the driver abandons after a few milliseconds (a call
-- that blocks for ever legitimately, a receive nobody sends to, is no
-- bug).  On the main thread, which cannot be abandoned, only calls that
-- something can end are made, and a rescuer goroutine ends them: when the
-- main thread has been blocked (go.status(0)) in the same call for a while,
-- it closes, unlocks, drains or completes every object among the call's
-- arguments.  A sleep longer than a moment, a go.wait() while goroutines
-- live, a select with nothing to wake it, a resume of a coroutine whose
-- body is unknown: these run in a goroutine instead.
local seed, batch, ncalls, logpath = tonumber(arg[1]), tonumber(arg[2]), tonumber(arg[3]), arg[4]
assert(seed and batch and ncalls and logpath, "usage: fuzz_child.lua SEED BATCH CALLS LOGFILE")

-- GORO_FUZZ_EXCLUDE=a,b (by hand, to look past a known crash): leave out
-- the calls whose name contains a or b ("late finaliser" and "finaliser
-- before goro" name the finalisers below).
local function excluded(name)
  for word in (os.getenv("GORO_FUZZ_EXCLUDE") or ""):gmatch("[^,]+") do
    if name:find(word, 1, true) then return true end
  end
  return false
end

local LOG = assert(io.open(logpath, "w"))
LOG:setvbuf("no")
local function log(line) LOG:write(line, "\n") end
log(string.format("seed %d batch %d calls %d", seed, batch, ncalls))

-- Made before goro is: finalised after its universe at exit (lua_close
-- runs finalisers in the reverse order of their marking), where goro
-- calls must still fail cleanly (issue 11, item 6).  And the coroutine
-- library as it was before goro wrapped it (item 7).
local go
local after_universe = not excluded("finaliser before goro") and setmetatable({}, { __gc = function()
  pcall(go, function() end)
  pcall(go.chan)
  pcall(go.after, 0.001)
  pcall(go.yield)
end })
local raw_resume, raw_running = coroutine.resume, coroutine.running

go = require "goro"
math.randomseed(seed, batch)
local random = math.random

local function pick(t) return t[random(#t)] end

-- Errors escaping goroutines are expected (random calls fail): counted.
local goroutine_errors = 0
local function onerror() goroutine_errors = goroutine_errors + 1 end
go.onerror(onerror)

-- {======================================================
-- Values and their descriptions
-- =======================================================

-- The kind of each object made here ("chan", "conn", ...), and a name for
-- the log; weak, so that objects can be collected (finalisers are fuzzed
-- too).
local KIND = setmetatable({}, { __mode = "k" })
local NAME = setmetatable({}, { __mode = "k" })

local function describe(v, depth)
  local t = type(v)
  if t == "string" then
    if #v > 40 then return string.format("string(%d bytes: %q...)", #v, v:sub(1, 20)) end
    return string.format("%q", v)
  elseif t == "number" then
    if v ~= v then return "0/0" end
    if v == math.huge then return "math.huge" end
    if v == -math.huge then return "-math.huge" end
    if math.type(v) == "integer" then return tostring(v) end
    return string.format("%.17g", v)
  elseif t == "nil" or t == "boolean" then
    return tostring(v)
  elseif NAME[v] then
    return NAME[v]
  elseif t == "table" and (depth or 0) < 2 and getmetatable(v) == nil then
    local parts = {}
    for k, x in next, v do
      if #parts > 6 then parts[#parts + 1] = "..."; break end
      parts[#parts + 1] = (math.type(k) == "integer" and "" or "[" .. describe(k, 2) .. "]=")
        .. describe(x, (depth or 0) + 1)
    end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  return t
end

local function named(v, name, kind)
  if v ~= nil and (type(v) == "table" or type(v) == "userdata" or type(v) == "function" or type(v) == "thread") then
    NAME[v] = name
    if kind then KIND[v] = kind end
  end
  return v
end

local NUMBERS = { 0, 1, -1, 2, 3, 7, 0.5, 1e-9, 0.001, -0.001, 2^31, 2^32, 2^53, 2^63,
                  math.maxinteger, math.mininteger, math.huge, -math.huge, 0/0, 1e300,
                  -1e300, -0.0, 65535, 65536, 1025, 16, 100, 0.01 }

local STRINGS = { "", "x", "10", "0.001", "1e300", "nan", "\0\1\255", ("a"):rep(100),
                  ("b"):rep(70000), "127.0.0.1:0", "localhost:0", "[::1]:0", ":0",
                  "127.0.0.1:", "127.0.0.1: 0", "127.0.0.1:99999", "256.0.0.1:1",
                  "127.0.0.1:-1", "a.invalid:80", "127.0.0.1:1", "localhost", "::1",
                  "127.0.0.1", ("x"):rep(300) .. ":1", "timeout", "backlog", "c", "stop",
                  "send", "__gc", "line\n", "a\r\nb\n" }

-- Functions to run, as bodies of goroutines and coroutines, as callbacks.
local function f_nop() end
local function f_error() error("fuzz: raised on purpose") end
local function f_error_table() error(setmetatable({}, { __tostring = function() error("fuzz: __tostring raises") end })) end
local function f_many(...) return ... end
local function f_yield(...) return coroutine.yield(...) end
local function f_gc() collectgarbage("step") end
local CALLBACKS = {
  named(f_nop, "f_nop"), named(f_error, "f_error"), named(f_error_table, "f_error_table"),
  named(f_many, "f_many"), named(f_yield, "f_yield"), named(f_gc, "f_gc"),
  named(setmetatable({}, { __call = function(_, ...) return ... end }), "callable_table"),
  named(setmetatable({}, { __call = f_error }), "callable_table_raising"),
}

-- Tables with hostile metatables, and case tables for select.
local function hostile_tables(ch)
  return {
    named(setmetatable({}, { __index = function() error("fuzz: __index raises") end }), "t_index_raises"),
    named(setmetatable({}, { __len = function() return 2^32 end, __index = function() return ch end }), "t_len_2^32"),
    named(setmetatable({}, { __len = function() return math.maxinteger end, __index = function() return false end }), "t_len_maxint"),
    named(setmetatable({}, { __len = function() return -1 end }), "t_len_-1"),
    named(setmetatable({}, { __len = function() return "x" end }), "t_len_string"),
    named(setmetatable({}, { __len = function() error("fuzz: __len raises") end }), "t_len_raises"),
    named(setmetatable({}, { __len = function() return 1 end, __index = function() return { ch, 1 } end }), "t_index_sendcase"),
    named(setmetatable({}, { __tostring = function() error("fuzz: __tostring raises") end }), "t_tostring_raises"),
    named(setmetatable({}, { __tostring = function() return {} end }), "t_tostring_table"),
    named(setmetatable({}, { __eq = f_error, __lt = f_error, __le = f_error, __concat = f_error }), "t_ops_raise"),
    named(setmetatable({}, { __metatable = "locked" }), "t_locked_mt"),
    named(setmetatable({}, { __name = "goro.chan" }), "t_named_like_chan"),
    named(setmetatable({}, { __mode = "kv" }), "t_weak"),
    named(setmetatable({}, { __tostring = function(t) return "<" .. tostring(t) .. ">" end }), "t_tostring_recursive"),
  }
end

-- }======================================================


-- {======================================================
-- The pool of objects, remade every so often
-- =======================================================

local pool            -- { values = {...}, by_kind = { chan = {...}, ... } }
local THREADS_SAFE = setmetatable({}, { __mode = "k" })   -- resumable on main
local lfs_ok, lfs = pcall(require, "lfs")

local function add(p, v, name, kind)
  if v == nil then return end
  named(v, name, kind)
  p.values[#p.values + 1] = v
  if kind then
    p.by_kind[kind] = p.by_kind[kind] or {}
    table.insert(p.by_kind[kind], v)
  end
end

-- A finaliser that makes a non-blocking goro call (items of issue 11:
-- timers stopped by a __gc at exit, go() from a finaliser).
local function finaliser(p, what)
  local target = what
  return setmetatable({}, { __gc = function()
    pcall(function()
      local k = KIND[target]
      if k == "timer" then target:stop(); target:reset(0.001)
      elseif k == "chan" then go.select{ target, { target, 1 }, default = true }; target:close()
      elseif k == "mutex" then target:trylock(); target:unlock()
      elseif k == "conn" or k == "listener" or k == "udp" then target:close()
      else go(f_nop) end
    end)
  end })
end

-- A finaliser made before the objects it uses: it runs after theirs, on
-- objects already finalised (issue 11, items 4 and 5).
local function late_finaliser(p)
  local holder = {}
  if excluded("late finaliser") then return holder end
  p.late = setmetatable({}, { __gc = function()
    for _, v in ipairs(holder) do
      pcall(function()
        local k = KIND[v]
        if k == "timer" then v:stop(); v:reset(0.001)
        elseif k == "chan" then go.select{ v, default = true }; go.select{ { v, 1 }, default = true }; v:send(1); v:close()
        elseif k == "mutex" then v:trylock(); v:unlock()
        elseif k == "wg" then v:add(1); v:done()
        elseif k == "conn" or k == "listener" or k == "udp" then v:close()
        end
      end)
    end
  end })
  return holder
end

local function make_pool(generation)
  local p = { values = {}, by_kind = {} }
  local holder = late_finaliser(p)
  local g = "g" .. generation .. "."
  local function ok(v) if type(v) == "userdata" or type(v) == "table" then return v end end
  add(p, go.chan(), g .. "chan0", "chan")
  add(p, go.chan(1), g .. "chan1", "chan")
  local full = go.chan(2); full:send(1); full:send("two")
  add(p, full, g .. "chan_full", "chan")
  local closed = go.chan(3); closed:send({}); closed:close()
  add(p, closed, g .. "chan_closed", "chan")
  add(p, go.mutex(), g .. "mutex", "mutex")
  local locked = go.mutex(); locked:lock()
  add(p, locked, g .. "mutex_locked", "mutex")
  add(p, go.waitgroup(), g .. "wg0", "wg")
  local wg1 = go.waitgroup(); wg1:add(1)
  add(p, wg1, g .. "wg1", "wg")
  local t = go.timer(0.002)
  add(p, t, g .. "timer", "timer")
  add(p, t.c, g .. "timer.c", "chan")
  local long = go.timer(1e6)
  add(p, long, g .. "timer_long", "timer")
  local stopped = go.timer(0.5); stopped:stop()
  add(p, stopped, g .. "timer_stopped", "timer")
  local tick = go.ticker(0.003)
  add(p, tick, g .. "ticker", "timer")
  add(p, tick.c, g .. "ticker.c", "chan")
  add(p, go.after(0.001), g .. "after", "chan")
  local l = ok(go.net.listen("127.0.0.1:0"))
  if l then
    add(p, l, g .. "listener", "listener")
    p.addr = l:addr()
    local c = ok(go.net.dial(p.addr, { timeout = 1 }))
    if c then
      add(p, c, g .. "conn_dialed", "conn")
      add(p, ok(l:accept()), g .. "conn_accepted", "conn")
    end
    local c2 = ok(go.net.dial(p.addr, { timeout = 1 }))   -- left in l's queue
    if c2 then add(p, c2, g .. "conn_queued", "conn") end
    local closed_l = ok(go.net.listen("127.0.0.1:0"))
    if closed_l then closed_l:close(); add(p, closed_l, g .. "listener_closed", "listener") end
    local cc = ok(go.net.dial(p.addr, { timeout = 1 }))
    if cc then cc:close(); add(p, cc, g .. "conn_closed", "conn") end
  end
  local u = ok(go.net.udp("127.0.0.1:0"))
  if u then
    add(p, u, g .. "udp", "udp")
    p.udpaddr = u:addr()
    local u2 = ok(go.net.udp("127.0.0.1:0"))
    if u2 then u2:sendto("hello", p.udpaddr); add(p, u2, g .. "udp2", "udp") end
  end
  add(p, io.stdout, "io.stdout", "other")
  local tmp = io.tmpfile()
  add(p, tmp, g .. "tmpfile", "other")
  local tmpclosed = io.tmpfile(); tmpclosed:close()
  add(p, tmpclosed, g .. "tmpfile_closed", "other")
  if lfs_ok then
    local _, dir = lfs.dir(".")
    add(p, dir, g .. "lfs_dir", "other")
  end
  -- Coroutines: suspended, dead, running (the main thread), and the thread
  -- of a goroutine parked in a receive (resuming it must be refused).
  local co = coroutine.create(function(...) local a = coroutine.yield(...); return a end)
  THREADS_SAFE[co] = true
  add(p, co, g .. "co_new", "thread")
  local co2 = coroutine.create(f_yield); coroutine.resume(co2, 1)
  THREADS_SAFE[co2] = true
  add(p, co2, g .. "co_suspended", "thread")
  local dead = coroutine.create(f_nop); coroutine.resume(dead)
  THREADS_SAFE[dead] = true
  add(p, dead, g .. "co_dead", "thread")
  add(p, coroutine.running(), "main_thread", "thread")
  local parked = go.chan(1)
  local gate = go.chan()
  go(function() parked:send(coroutine.running()); gate:recv() end)
  add(p, (parked:recv()), g .. "goroutine_thread_parked", "thread")
  add(p, gate, g .. "gate", "chan")
  local ended = go.chan(1)
  go(function() ended:send(coroutine.running()) end)
  add(p, (ended:recv()), g .. "goroutine_thread_ended", "thread")
  -- Functions and tables.
  for _, f in ipairs(CALLBACKS) do add(p, f, NAME[f], "function") end
  for _, h in ipairs(hostile_tables(full)) do add(p, h, NAME[h], "table") end
  add(p, {}, g .. "empty_table", "table")
  add(p, { 1, 2, 3 }, g .. "array", "table")
  for _, v in ipairs(p.values) do
    if KIND[v] and random(3) == 1 then holder[#holder + 1] = v end
  end
  -- Finalisers doing goro work when their object goes.
  p.finalisers = {}
  for i, v in ipairs(p.values) do
    if KIND[v] and KIND[v] ~= "other" and random(4) == 1 then
      p.finalisers[#p.finalisers + 1] = finaliser(p, v)
    end
    if i > 60 then break end
  end
  return p
end

local function object(kind)
  local list = pool.by_kind[kind]
  if list and #list > 0 and random(8) > 1 then return pick(list) end
  return pick(pool.values)
end

-- }======================================================


-- {======================================================
-- Random arguments
-- =======================================================

local function number() return pick(NUMBERS) end
local function duration()
  local r = random(6)
  if r <= 3 then return pick({ 0, 0.001, 0.002, 1e-9, -1 }) end
  if r == 4 then return number() end
  return pick({ "0.001", "x", {}, nil, true })
end

local function address()
  local r = random(8)
  if r <= 2 and pool.addr then return pool.addr end
  if r == 3 and pool.udpaddr then return pool.udpaddr end
  if r == 4 then return pick({ "127.0.0.1:0", "[::1]:0", "localhost:0", "127.0.0.1:1" }) end
  if r == 5 then return number() end
  return pick(STRINGS)
end

local function case_table()
  local r = random(10)
  local ch = object("chan")
  if r == 1 then return { ch } end
  if r == 2 then return { ch, { object("chan"), pick({ 1, "v", {}, false }) } } end
  if r == 3 then return { ch, default = true } end
  if r == 4 then return { default = true } end
  if r == 5 then return {} end
  if r == 6 then return { false, ch, false } end
  if r == 7 then return { { ch }, { ch, nil }, { ch, 1, 2 } } end
  if r == 8 then return { pick(pool.values), pick(pool.values), default = pick({ true, false, 1, "x" }) } end
  if r == 9 then return { go.after(0.001), ch } end
  return pick(pool.by_kind.table or { {} })
end

local function options()
  local r = random(8)
  if r == 1 then return nil end
  if r == 2 then return { timeout = duration() } end
  if r == 3 then return { backlog = number() } end
  if r == 4 then return { reuseport = pick({ true, false, 1, "x" }) } end
  if r == 5 then return { bogus = 1 } end
  if r == 6 then return { timeout = pick({ "x", {}, math.huge, 0/0, -1, 1e300 }) } end
  if r == 7 then return pick(pool.by_kind.table or { {} }) end
  return number()
end

local function any()
  local r = random(12)
  if r == 1 then return nil end
  if r == 2 then return pick({ true, false }) end
  if r <= 4 then return number() end
  if r <= 6 then return pick(STRINGS) end
  if r == 7 then return case_table() end
  if r == 8 then return pick(CALLBACKS) end
  return pick(pool.values)
end

-- A list of n arguments (n random when nil); the count is kept in .n.
local function args_of(...)
  return table.pack(...)
end

local function some(n)
  n = n or random(0, 3)
  local a = { n = n }
  for i = 1, n do a[i] = any() end
  return a
end

-- }======================================================


-- {======================================================
-- The calls
-- =======================================================

-- Each entry: name; fn (the function, or a function that returns it);
-- args() -> packed arguments, `self` first for methods (random or of
-- `kind`); main_ok(args) -> false when it must not run on the main thread.
local ENTRIES = {}
local function entry(name, fn, args, main_ok)
  ENTRIES[#ENTRIES + 1] = { name = name, fn = fn, args = args or some, main_ok = main_ok }
end

local function never_main() return false end

-- Is v, on the main thread, a blocking call's operand that the rescuer can
-- end?  Channels, mutexes, wait groups, sockets of the pool.
local POKABLE = { chan = true, mutex = true, wg = true, conn = true, listener = true, udp = true, timer = true }

-- A select the rescuer can end: a plain case table with a default or a
-- case on a channel of the pool.
local function select_pokable(t)
  if type(t) ~= "table" then return true end   -- raises
  if getmetatable(t) ~= nil then return false end   -- its cases are unknown here
  if rawget(t, "default") then return true end
  for i = 1, rawlen(t) do
    local c = rawget(t, i)
    if KIND[c] == "chan" then return true end
    if type(c) == "table" and getmetatable(c) == nil and KIND[rawget(c, 1)] == "chan" then return true end
  end
  return false   -- nothing the rescuer could make ready: it may block for good
end

local function short_sleep(a)
  local s = tonumber(a[1])
  return not s or s ~= s or s <= 0.02
end

-- go.*
entry("go(...)", function() return function(...) return go(...) end end,
      function() local a = some(random(0, 3)); table.insert(a, 1, random(3) > 1 and pick(CALLBACKS) or any()); a.n = a.n + 1; return a end)
entry("go.spawn", function() return go.spawn end,
      function() local a = some(random(0, 3)); table.insert(a, 1, random(3) > 1 and pick(CALLBACKS) or any()); a.n = a.n + 1; return a end)
entry("go.id", function() return go.id end)
entry("go.yield", function() return go.yield end)
entry("go.numgoroutine", function() return go.numgoroutine end)
entry("go.gomaxprocs", function() return go.gomaxprocs end,
      function() return args_of(pick({ nil, 1, 2, 3, 0, -1, 1025, 2^53, 0/0, "2", {}, 1.5 })) end)
entry("go.wait", function() return go.wait end, some,
      function() return go.numgoroutine() == 0 end)
entry("go.onerror", function() return function(x) local r = table.pack(pcall(go.onerror, x)); go.onerror(onerror); return table.unpack(r, 2, r.n) end end,
      function() return args_of(pick({ 1, "x", {}, true, io.stdout, pick(pool.values), onerror })) end)
entry("go.stats", function() return go.stats end)
entry("go.status", function() return go.status end, function() return args_of(pick({ nil, 0, 1, -1, go.id(), 2^53, 0/0, math.huge, "1", {}, random(1, 50) })) end)
entry("go.stacks", function() return go.stacks end)
entry("go.now", function() return go.now end)
entry("go.sleep", function() return go.sleep end, function() return args_of(duration()) end, short_sleep)
entry("go.after", function() return go.after end, function() return args_of(duration()) end)
entry("go.timer", function() return go.timer end, function() return args_of(duration()) end)
entry("go.ticker", function() return go.ticker end, function() return args_of(duration()) end)
entry("go.chan", function() return go.chan end,
      function() return args_of(pick({ nil, 0, 1, 2, 100, -1, 2^53, math.huge, 0/0, "3", {}, 1.5, 2^40, math.maxinteger })) end)
entry("go.select", function() return go.select end, function() return args_of(case_table(), random(4) == 1 and any() or nil) end,
      function(a) return select_pokable(a[1]) end)
entry("go.mutex", function() return go.mutex end)
entry("go.waitgroup", function() return go.waitgroup end)
entry("go.net.listen", function() return go.net.listen end, function() return args_of(address(), options()) end)
entry("go.net.dial", function() return go.net.dial end, function() return args_of(address(), options()) end)
entry("go.net.udp", function() return go.net.udp end, function() return args_of(address(), options()) end)
entry("go.net.resolve", function() return go.net.resolve end,
      function() return args_of(pick({ "localhost", "127.0.0.1", "::1", "", "a.invalid", ("x"):rep(300), 1, {}, nil, "256.1.1.1", "[::1]" })) end)

-- coroutine.*: resuming is safe on the main thread only for bodies known
-- not to block (THREADS_SAFE); the others run in a goroutine.
local function thread_or_any() return random(3) > 1 and object("thread") or any() end
entry("coroutine.create", function() return coroutine.create end, function() return args_of(random(2) == 1 and pick(CALLBACKS) or any()) end)
entry("coroutine.resume", function() return coroutine.resume end,
      function() local a = some(random(0, 2)); table.insert(a, 1, thread_or_any()); a.n = a.n + 1; return a end,
      function(a) return type(a[1]) ~= "thread" or THREADS_SAFE[a[1]] or NAME[a[1]] and NAME[a[1]]:find("goroutine_thread", 1, true) ~= nil or a[1] == coroutine.running() end)
entry("coroutine.wrap+call", function() return function(f, ...) return coroutine.wrap(f)(...) end end,
      function() local a = some(random(0, 2)); table.insert(a, 1, random(2) == 1 and pick(CALLBACKS) or any()); a.n = a.n + 1; return a end,
      function(a) return a[1] ~= f_yield and (type(a[1]) ~= "function" or NAME[a[1]] ~= nil) end)
entry("coroutine.resume (before goro)", function() return raw_resume end,
      function() local a = some(random(0, 2)); table.insert(a, 1, thread_or_any()); a.n = a.n + 1; return a end,
      function(a) return type(a[1]) ~= "thread" or THREADS_SAFE[a[1]] or NAME[a[1]] and NAME[a[1]]:find("goroutine_thread", 1, true) ~= nil or a[1] == raw_running() end)
entry("coroutine.yield", function() return coroutine.yield end)
entry("coroutine.isyieldable", function() return coroutine.isyieldable end, function() return args_of(thread_or_any()) end)
entry("coroutine.running", function() return coroutine.running end)
entry("coroutine.status", function() return coroutine.status end, function() return args_of(thread_or_any()) end)
entry("coroutine.close", function() return coroutine.close end, function() return args_of(thread_or_any()) end)

-- Methods and metamethods of every goro object kind, from the registry's
-- "goro.*" metatables: self is of the method's own kind half the time.
local KIND_OF_MT = { ["goro.chan"] = "chan", ["goro.mutex"] = "mutex", ["goro.waitgroup"] = "wg",
                     ["goro.timer"] = "timer", ["goro.conn"] = "conn", ["goro.listener"] = "listener",
                     ["goro.udp"] = "udp" }

-- Plausible arguments after self, by method name.
local METHOD_ARGS = {
  send = function() return any() end,
  add = function() return pick({ 1, -1, 0, 2, math.maxinteger, math.mininteger, 2^53, 0/0, "1", {} }) end,
  reset = duration,
  settimeout = function() return pick({ nil, 0.001, 0, -1, math.huge, 1e300, 0/0, "x", {}, 2^63 }) end,
  setdeadline = function() return pick({ nil, go.now() + 0.001, 0, -1, math.huge, 0/0, "x" }) end,
  setreaddeadline = function() return pick({ nil, go.now() + 0.001, 0, math.huge, 0/0 }) end,
  setwritedeadline = function() return pick({ nil, go.now() + 0.001, 0, math.huge, 0/0 }) end,
  read = function() return pick({ nil, 1, 0, -1, 65536, 2^31, 2^53, math.huge, 0/0, "x" }) end,
  readline = function() return pick({ nil, 1, 0, -1, 10, 2^53, math.huge, 0/0, "x" }) end,
  readn = function() return pick({ 1, 0, -1, 5, 2^31, 2^53, math.huge, 0/0, "x", nil }) end,
  write = function() return pick({ "", "x", "line\n", ("w"):rep(70000), 1, {}, nil }) end,
  sendto = function() return pick({ "", "x", ("u"):rep(70000), 1, {} }), address() end,
  recvfrom = function() return pick({ nil, 1, 0, -1, 65536, 2^53, 0/0 }) end,
  __index = function() return pick({ "c", "stop", "x", 1, {}, nil, "reset", "__gc" }) end,
}

local mts = {}
for name, mt in pairs(debug.getregistry()) do
  if type(name) == "string" and name:match("^goro%.") and type(mt) == "table" then
    mts[#mts + 1] = name
  end
end
table.sort(mts)
local methods_found = 0
for _, mtname in ipairs(mts) do
  local mt = debug.getregistry()[mtname]
  local kind = KIND_OF_MT[mtname]
  local fns = {}
  for k, v in pairs(mt) do
    if type(v) == "function" then fns[#fns + 1] = { k, v } end
  end
  if type(mt.__index) == "table" then
    for k, v in pairs(mt.__index) do
      if type(v) == "function" then fns[#fns + 1] = { k, v } end
    end
  end
  table.sort(fns, function(x, y) return x[1] < y[1] end)
  for _, kv in ipairs(fns) do
    local mname, f = kv[1], kv[2]
    methods_found = methods_found + 1
    local known = POKABLE[kind] and (KIND_OF_MT[mtname] ~= nil)
    entry(mtname .. ":" .. mname, function() return f end,
          function()
            local self = random(2) == 1 and kind and object(kind) or any()
            local a
            if METHOD_ARGS[mname] and random(4) > 1 then
              a = table.pack(self, METHOD_ARGS[mname]())
            else
              a = some(random(0, 3))
              table.insert(a, 1, self)
              a.n = a.n + 1
            end
            return a
          end,
          function(a)
            -- On the main thread: methods of known kinds, whose blocking
            -- forms the rescuer ends; iter returns a function (called by
            -- the "iter step" entry).  Methods of kinds unknown here
            -- (added later) run in goroutines.
            return known
          end)
  end
end
assert(methods_found > 30, "few goro methods found in the registry: " .. methods_found)

-- One step of ch:iter()'s iterator: a receive.
entry("goro.chan:iter step", function()
  return function(ch, ...) local f, s, c = ch:iter(...); return f(s, c) end
end, function() return args_of(object("chan")) end)

-- A goroutine parked for good on a channel of the pool (its thread is
-- resumed by other calls), and a collection step (finalisers).
entry("park a goroutine", function()
  return function(ch) go(function() pcall(ch.recv, ch) end) end
end, function() return args_of(object("chan")) end)
entry("collectgarbage step", function() return function() collectgarbage("step", 100) end end)

-- Lua's C stack limit reached through C functions (plain lua5.4 raises
-- "C stack overflow"; a goroutine must too, issue 11, item 2).
entry("nested string.gsub", function()
  return function(depth)
    depth = math.tointeger(depth) or 0
    local function nest(n)
      if n <= 0 then return "" end
      return (("x"):gsub("x", function() return nest(n - 1) end))
    end
    return nest(math.min(depth, 250))
  end
end, function() return args_of(pick({ 10, 100, 150, 199, 250 })) end)
entry("tostring of a self-formatting table", function()
  return function() return tostring(setmetatable({}, { __tostring = function(t) return tostring(t) end })) end
end)

-- A select blocked on a case table that is then emptied and collected:
-- the select must keep its channels (issue 11, item 10).
entry("select, then empty its cases and collect", function()
  return function(t)
    go(function() pcall(go.select, t) end)
    go.yield()
    for k in pairs(t) do t[k] = nil end
    collectgarbage()
  end
end, function()
  return args_of({ go.after(pick({ 0.001, 0.003 })), go.chan(), { go.chan(), 1 } })
end)

-- Any function in go or go.net not listed above (added later) is fuzzed
-- too, in goroutines only.
local LISTED = {}
for _, e in ipairs(ENTRIES) do LISTED[e.name] = true end
for _, space in ipairs({ { "go.", go }, { "go.net.", go.net } }) do
  local keys = {}
  for k, v in pairs(space[2]) do
    if type(v) == "function" and not LISTED[space[1] .. k] then keys[#keys + 1] = k end
  end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local f = space[2][k]
    entry(space[1] .. k, function() return f end, some, never_main)
  end
end

do
  local kept = {}
  for _, e in ipairs(ENTRIES) do
    if not excluded(e.name) then kept[#kept + 1] = e end
  end
  ENTRIES = kept
end

-- }======================================================


-- {======================================================
-- Running them
-- =======================================================

-- The current main-thread call, for the rescuer: { id =, operands = }.
local main_call
local finished = false

local function poke(v, depth)
  local k = KIND[v]
  if k == "chan" then
    pcall(go.select, { v, default = true })
    pcall(go.select, { { v, 0 }, default = true })
    if random(4) == 1 then pcall(v.close, v) end
  elseif k == "mutex" then
    pcall(v.unlock, v)
  elseif k == "wg" then
    -- Its counter, from its __tostring ("goro.waitgroup(n)"), down to 0.
    local ok, text = pcall(tostring, v)
    local n = ok and math.tointeger(tonumber(text:match("%((%-?%d+)%)")))
    if n and n > 0 then pcall(v.add, v, -n) end
  elseif k == "timer" then
    local ok, c = pcall(function() return v.c end)
    if ok then poke(c, depth + 1) end
  elseif k == "conn" or k == "listener" or k == "udp" then
    pcall(v.close, v)
  elseif type(v) == "table" and depth < 2 and getmetatable(v) == nil then
    for _, x in pairs(v) do poke(x, depth + 1) end
  end
end

local function rescuer()
  local last, stuck = nil, 0
  while not finished do
    go.sleep(0.003)
    local cur = main_call
    if cur and cur == last then
      local state = go.status(0)
      if state ~= "running" and state ~= "runnable" then
        stuck = stuck + 1
        if stuck >= 2 then
          for i = 1, cur.operands.n do poke(cur.operands[i], 0) end
        end
        if stuck > 2000 then
          log(string.format("STUCK main thread in call #%d (%s) for 6 s:\n%s", cur.id, state, go.stacks()))
          LOG:close()
          os.exit(3)
        end
      end
    else
      last, stuck = cur, 0
    end
  end
end

local WATCH = 0.004   -- how long a goroutine's call may take before it is left

local function describe_call(id, e, a, where)
  local parts = {}
  for i = 1, a.n do parts[i] = describe(a[i]) end
  return string.format("#%d %s %s(%s)", id, where, e.name, table.concat(parts, ", "))
end

local function run_call(id, e, a, on_main)
  local f = e.fn()
  if on_main then
    log("B " .. describe_call(id, e, a, "main"))
    main_call = { id = id, operands = a }
    pcall(f, table.unpack(a, 1, a.n))
    main_call = nil
    log("E #" .. id)
  else
    local done = go.chan(1)
    log("B " .. describe_call(id, e, a, "goroutine"))
    go(function()
      pcall(f, table.unpack(a, 1, a.n))
      log("E #" .. id)
      done:send(true)
    end)
    go.select{ done, go.after(WATCH) }
  end
end

-- A first go.wait() on the main thread while no goroutine lives.
log("B #0 main go.wait()")
go.wait()
log("E #0")
local generation = 0
pool = make_pool(generation)
go(rescuer)
for id = 1, ncalls do
  if id % 150 == 0 then
    generation = generation + 1
    pool = make_pool(generation)
    collectgarbage("step", 200)
  end
  local e = pick(ENTRIES)
  local a = e.args()
  local on_main = random(2) == 1 and (e.main_ok == nil or e.main_ok(a))
  run_call(id, e, a, on_main)
end
finished = true
log(string.format("calls %d, errors escaped goroutines: %d, goroutines left: %d",
                  ncalls, goroutine_errors, go.numgoroutine()))
pool = nil
collectgarbage()
collectgarbage()
log("DONE")
LOG:close()
