-- bench/lua/coro_bench.lua — the single-threaded floor of goro's benchmark
-- suite: the workloads of workloads.lua (those of bench/go/main.go) on plain
-- Lua coroutines and a minimal Go-like scheduler in Lua, all of it below.
-- It offers the calls of goro's API that the workloads use (go.spawn,
-- go.chan, go.select, go.wait, go.waitgroup), so both Lua columns run the
-- same program.
--
--   lua5.4 bench/lua/coro_bench.lua -w W7 -n 10000000
--
-- prints one line, "RESULT <workload> <value> <unit>" (see harness.lua).
-- -procs is accepted and ignored: this is one thread.  goro's Lua goroutines
-- run Lua one thread at a time too (one token per Lua state), so this is
-- what the same programs cost with nothing but the Lua VM's own coroutine
-- switches: the floor goro-lua is compared against.
--
-- The scheduler keeps Go's semantics where the workloads can see them:
-- unbuffered channels hand a value straight from sender to receiver,
-- buffered ones are a ring, blocked senders and receivers are served first
-- come first served, close wakes every receiver (nil, false) and fails every
-- blocked sender, and select (receive cases) picks uniformly among the ready
-- cases.  A woken coroutine goes to the back of one FIFO run queue; the
-- waker goes on running (as a Go goroutine does after a hand-off).

local dir = (arg and arg[0] or ""):match("^(.*)/[^/]*$") or "."
package.path = dir .. "/?.lua;" .. package.path
local H = require "harness"

local co_create, co_resume, co_yield = coroutine.create, coroutine.resume, coroutine.yield
local random = math.random


-- {======================================================
-- Run queue
-- =======================================================

-- Each entry is four slots: the coroutine and up to three values that
-- co_yield returns to it (or its arguments, the first time).  Indices reset
-- to 1 whenever the queue empties, so that the array stays small and dense.
local rq, rq_h, rq_t = {}, 1, 0
local current                  -- the coroutine being resumed

local function ready(co, a, b, c)
  local t = rq_t
  rq[t + 1], rq[t + 2], rq[t + 3], rq[t + 4] = co, a, b, c
  rq_t = t + 4
end

local function spawn(fn, a, b, c)
  ready(co_create(fn), a, b, c)
end

-- Resume coroutines until none is runnable or stop(), checked between two
-- resumes, is true.  go.wait() is run(): with nothing runnable every
-- coroutine has finished, or the rest are blocked for good (a deadlock; the
-- workloads' self-checks catch that).
local function run(stop)
  while rq_h <= rq_t and not (stop and stop()) do
    local h = rq_h
    local co, a, b, c = rq[h], rq[h + 1], rq[h + 2], rq[h + 3]
    rq[h], rq[h + 1], rq[h + 2], rq[h + 3] = nil, nil, nil, nil
    if h + 4 > rq_t then
      -- Empty: start again at 1; after a burst (W1, W5 queue a million
      -- coroutines at once) drop the big array rather than keep it.
      if rq_t > 4096 then rq = {} end
      rq_h, rq_t = 1, 0
    else
      rq_h = h + 4
    end
    current = co
    local ok, err = co_resume(co, a, b, c)
    if not ok then
      H.fail("coroutine failed: %s", debug.traceback(co, tostring(err)))
    end
  end
  current = nil
end

-- }======================================================


-- {======================================================
-- Channels
-- =======================================================
--
-- recvq: the receivers waiting, two slots each: the waiter and its case
-- index.  A plain receiver is its coroutine (index false), resumed with
-- (v, ok).  A select is a table {co = coroutine, done = false} queued on
-- every case's channel, resumed with (case index, v, ok); the first channel
-- to wake it sets done, and the others drop it when it reaches the front of
-- their queue (lazy removal: no search through the queues).
-- sendq: the senders waiting, two slots each: the coroutine and its value;
-- resumed with ok (false: the channel was closed).

local Chan = {}
Chan.__index = Chan

local function chan(cap)
  return setmetatable({
    cap = cap or 0, closed = false,
    buf = {}, bh = 1, bn = 0,    -- ring buffer: index of the first, count
    recvq = {}, rh = 1, rt = 0,  -- first and last slot in use
    sendq = {}, sh = 1, st = 0,
  }, Chan)
end

-- Pop the first receiver still waiting: its coroutine and case index (false
-- for a plain recv), or nil.
local function pop_recv(ch)
  local q, h, t = ch.recvq, ch.rh, ch.rt
  while h <= t do
    local w, idx = q[h], q[h + 1]
    q[h], q[h + 1] = nil, nil
    h = h + 2
    if not idx or not w.done then
      if h > t then ch.rh, ch.rt = 1, 0 else ch.rh = h end
      if not idx then return w, false end
      w.done = true
      return w.co, idx
    end
  end
  ch.rh, ch.rt = 1, 0
  return nil
end

-- Pop the first sender waiting (there must be one): coroutine, value.
local function pop_send(ch)
  local q, h = ch.sendq, ch.sh
  local co, v = q[h], q[h + 1]
  q[h], q[h + 1] = nil, nil
  if h + 2 > ch.st then ch.sh, ch.st = 1, 0 else ch.sh = h + 2 end
  return co, v
end

function Chan:send(v)
  if self.closed then error("send on closed channel", 2) end
  if self.rh <= self.rt then                  -- hand off to a receiver
    local co, idx = pop_recv(self)
    if co then
      if idx then ready(co, idx, v, true) else ready(co, v, true) end
      return
    end
  end
  local n, cap = self.bn, self.cap
  if n < cap then                             -- room in the buffer
    local i = self.bh + n
    if i > cap then i = i - cap end
    self.buf[i] = v
    self.bn = n + 1
    return
  end
  local q, t = self.sendq, self.st            -- block
  q[t + 1], q[t + 2] = current, v
  self.st = t + 2
  if not co_yield() then error("send on closed channel", 2) end
end

function Chan:recv()
  local n = self.bn
  if n > 0 then                               -- from the buffer
    local buf, h, cap = self.buf, self.bh, self.cap
    local v = buf[h]
    self.bh = h < cap and h + 1 or 1
    if self.sh <= self.st then
      -- Senders wait only while the buffer is full: the slot just freed
      -- is the one after the last, and the first blocked sender fills it.
      local co, sv = pop_send(self)
      buf[h] = sv
      ready(co, true)
    else
      buf[h] = nil
      self.bn = n - 1
    end
    return v, true
  end
  if self.sh <= self.st then                  -- straight from a sender
    local co, v = pop_send(self)
    ready(co, true)
    return v, true
  end
  if self.closed then return nil, false end
  local q, t = self.recvq, self.rt            -- block
  q[t + 1], q[t + 2] = current, false
  self.rt = t + 2
  return co_yield()
end

-- for v in ch:iter(): receive until the channel is closed and drained.
function Chan:iter()
  return function()
    return (self:recv())
  end
end

function Chan:close()
  if self.closed then error("close of closed channel", 2) end
  self.closed = true
  while true do
    local co, idx = pop_recv(self)
    if not co then break end
    if idx then ready(co, idx, nil, false) else ready(co, nil, false) end
  end
  while self.sh <= self.st do
    ready((pop_send(self)), false)
  end
end

-- go.select for receive cases: cases[i] is a channel or false (disabled,
-- Go's nil channel); default = true makes it non-blocking (nil when no case
-- is ready).  Picks uniformly among the ready cases; returns the case index,
-- v, ok as ch:recv() would.  (The workloads need no send cases.)
local ready_cases = {}   -- scratch: indices of the ready cases

local function select(cases)
  local n = #cases
  local nready = 0
  for i = 1, n do
    local c = cases[i]
    if c and (c.bn > 0 or c.sh <= c.st or c.closed) then
      nready = nready + 1
      ready_cases[nready] = i
    end
  end
  if nready > 0 then
    local i = ready_cases[random(nready)]
    return i, cases[i]:recv()                 -- ready: does not block
  end
  if cases.default then return nil end
  local w = { co = current, done = false }    -- block on every case
  for i = 1, n do
    local c = cases[i]
    if c then
      local q, t = c.recvq, c.rt
      q[t + 1], q[t + 2] = w, i
      c.rt = t + 2
    end
  end
  return co_yield()
end

-- }======================================================


-- {======================================================
-- Wait group
-- =======================================================
--
-- go.waitgroup() for the main thread, the only place the workloads wait on
-- one: wg:wait() runs coroutines until the count is zero.

local WaitGroup = {}
WaitGroup.__index = WaitGroup

function WaitGroup:add(n)
  self.n = self.n + n
  if self.n < 0 then error("negative WaitGroup counter", 2) end
end

function WaitGroup:done()
  self:add(-1)
end

function WaitGroup:wait()
  if current then error("coro_bench: wg:wait() only on the main thread", 2) end
  run(function() return self.n == 0 end)
  if self.n ~= 0 then H.fail("wg:wait(): all coroutines are asleep - deadlock!") end
end

-- }======================================================

H.main("coro_bench", arg, function()   -- -procs: one thread, ignored
  return {
    spawn = spawn,
    chan = chan,
    select = select,
    wait = function() run() end,
    waitgroup = function() return setmetatable({ n = 0 }, WaitGroup) end,
  }
end)
