#!/usr/bin/env lua5.4
--[[
hey.lua — an HTTP/1.1 load generator written with goro, after `hey` and `wrk`.

  lua5.4 examples/hey.lua [-c conns] [-n requests | -z duration] [options] URL

Each of the -c connections is one goroutine that sends a request, reads
the whole response, and sends the next on the same connection (keep-alive),
reconnecting when the server closes it or a request fails.  With -n the
requests are shared out between the goroutines beforehand, as hey does;
with -z each goroutine goes on until the time is up, and a request cut
short by the end is not counted, as wrk does.

A request's latency runs from the first byte written to the last byte of
its response read, as wrk measures it: connecting is not part of it.  The
latencies go into a log-linear histogram (1 µs resolution below 0.5 ms,
within 0.4% above), so that a run of any length takes the same memory.

Every goroutine keeps its own counts and only the main thread adds them
up: goroutines are preempted between any two Lua instructions, so a shared
counter would lose updates, as an unsynchronised one does in Go.
]]

local go = require "goro"

local MAX_LINE = 64 * 1024   -- status and header lines of a response
local MAX_FIELDS = 200       -- header fields of a response

local USAGE = [[
usage: lua5.4 examples/hey.lua [options] URL
  -n N          requests to send in all (default 200)
  -c N          concurrent connections, one goroutine each (default 50)
  -z D          send for this long instead (e.g. 10s, 500ms, 1m); overrides -n
  -m METHOD     request method (default GET)
  -H "K: V"     add a request header (repeatable)
  -d BODY       request body
  -D FILE       request body from FILE
  -T TYPE       Content-Type of the body (default text/plain)
  -t SECONDS    timeout of each request, and of connecting (default 20; 0: none)
  -k            disable keep-alive: one connection per request
  -q            no progress line
  -h            this help
URL is http://host[:port][/path]; https is not supported.]]

local function die(msg)
  io.stderr:write("hey: ", msg, "\n", USAGE, "\n")
  os.exit(2)
end

-- "10s", "1.5m", "250ms", "3" (seconds) -> seconds
local function duration(s)
  local n, unit = s:match("^(%d+%.?%d*)(%a*)$")
  local scale = ({ [""] = 1, ms = 1e-3, s = 1, m = 60, h = 3600 })[unit]
  if not n or not scale then die("bad duration " .. s) end
  return tonumber(n) * scale
end

local function count(s, what)
  local n = math.tointeger(tonumber(s))
  if not n or n < 1 then die(what .. " must be a positive integer") end
  return n
end

local opts = { n = 200, c = 50, method = "GET", headers = {}, timeout = 20,
               ctype = "text/plain" }
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    local function value()
      i = i + 1
      return arg[i] or die("option " .. a .. " needs a value")
    end
    if a == "-n" then opts.n = count(value(), "-n")
    elseif a == "-c" then opts.c = count(value(), "-c")
    elseif a == "-z" then opts.z = duration(value())
    elseif a == "-m" then opts.method = value():upper()
    elseif a == "-H" then
      local h = value()
      if not h:match("^[%w!#$%%&'*+.^_`|~-]+:") then die("bad header " .. h) end
      opts.headers[#opts.headers + 1] = h
    elseif a == "-d" then opts.body = value()
    elseif a == "-D" then
      local path = value()
      local f, err = io.open(path, "rb")
      if not f then die(err) end
      opts.body = f:read("a")
      f:close()
    elseif a == "-T" then opts.ctype = value()
    elseif a == "-t" then opts.timeout = tonumber(value()) or die("-t needs seconds")
    elseif a == "-k" then opts.nokeepalive = true
    elseif a == "-q" then opts.quiet = true
    elseif a == "-h" or a == "--help" then print(USAGE) os.exit(0)
    elseif a:sub(1, 1) == "-" then die("unknown option " .. a)
    elseif opts.url then die("more than one URL")
    else opts.url = a end
    i = i + 1
  end
  if not opts.url then die("no URL") end
  if opts.timeout <= 0 then opts.timeout = nil end
  if opts.z and opts.z <= 0 then die("-z must be positive") end
  if not opts.z and opts.c > opts.n then opts.c = opts.n end
end

-- The URL: http://host[:port][/path], host a name, an IPv4 or [IPv6] address.
local host, port, path
do
  local scheme, rest = opts.url:match("^(%a[%w+.-]*)://(.*)$")
  if not scheme then die("bad URL " .. opts.url) end
  if scheme:lower() ~= "http" then die(scheme .. " is not supported, only http") end
  local authority
  authority, path = rest:match("^([^/?#]*)(.*)$")
  host, port = authority:match("^(%[[^%]]+%]):?(%d*)$")
  if not host then host, port = authority:match("^([^:]+):?(%d*)$") end
  if not host then die("bad URL " .. opts.url) end
  if port == "" then port = "80" end
  path = path:gsub("#.*", "")
  if path == "" or path:sub(1, 1) == "?" then path = "/" .. path end
end
local address = host .. ":" .. port

-- The request, the same bytes every time.
local REQUEST
do
  -- -H replaces a default field of the same name; the body's framing is
  -- hey.lua's to set, from -d or -D.
  local has = {}
  for _, h in ipairs(opts.headers) do
    local name = h:match("^([^:]+)"):lower()
    if name == "content-length" or name == "transfer-encoding" then
      die("-H " .. name .. ": the body's length comes from -d or -D")
    end
    has[name] = true
  end
  local head = { opts.method .. " " .. path .. " HTTP/1.1" }
  local function default(name, value)
    if not has[name:lower()] then head[#head + 1] = name .. ": " .. value end
  end
  default("Host", port == "80" and host or address)
  default("User-Agent", "goro-hey/1.0")
  default("Accept", "*/*")
  if opts.nokeepalive then default("Connection", "close") end
  if opts.body then
    default("Content-Type", opts.ctype)
    head[#head + 1] = "Content-Length: " .. #opts.body
  end
  for _, h in ipairs(opts.headers) do head[#head + 1] = h end
  REQUEST = table.concat(head, "\r\n") .. "\r\n\r\n" .. (opts.body or "")
end

--[[
The latency histogram: microseconds v < 512 count in bucket v; above, v is
shifted right e times until it is below 512 (it is then at least 256) and
counts in bucket e*256 + (v >> e), which keeps 8 significant bits.
]]
local function bucket(us)
  if us < 512 then return us end
  local e = 0
  while us >= 512 do us = us >> 1; e = e + 1 end
  return e * 256 + us
end

-- The middle of a bucket's range, in microseconds.
local function bucket_value(b)
  if b < 512 then return b end
  local e = b // 256 - 1
  local v = b - e * 256
  return ((v << e) + ((v + 1) << e) - 1) / 2
end

-- A goroutine's results.
local function new_stats()
  return { done = 0, hist = {}, status = {}, errors = {}, bytes = 0,
           lat_sum = 0, lat_min = math.huge, lat_max = 0 }
end

local function record(st, seconds, status, bytes)
  local us = math.floor(seconds * 1e6 + 0.5)
  local b = bucket(us)
  st.hist[b] = (st.hist[b] or 0) + 1
  st.done = st.done + 1
  st.lat_sum = st.lat_sum + seconds
  if seconds < st.lat_min then st.lat_min = seconds end
  if seconds > st.lat_max then st.lat_max = seconds end
  st.status[status] = (st.status[status] or 0) + 1
  st.bytes = st.bytes + bytes
end

local function record_error(st, kind)
  st.errors[kind] = (st.errors[kind] or 0) + 1
  st.done = st.done + 1
end

-- A failed request, raised by the reader below: `kind` is "what: message";
-- `early` marks a failure before any byte of the response arrived, which
-- on a reused connection means the server closed it meanwhile.
local function fail(what, err, early)
  error({ kind = what .. ": " .. tostring(err), early = early }, 0)
end

-- A response field line's name and its value without the blanks around
-- it, or nil.  In linear time: the pattern ":[ \t]*(.-)[ \t]*$" tries
-- every end of the value against the blanks after it, and a header of
-- 60 KB of blanks inside a value took 14 s to parse.
local function split_field(line)
  local name, first = line:match("^([^:]+):[ \t]*()")
  if not name then return nil end
  local last = #line
  while last >= first do
    local b = line:byte(last)
    if b ~= 32 and b ~= 9 then break end
    last = last - 1
  end
  return name, line:sub(first, last)
end

--[[
One request on its connection.  goro's timeouts are per call, so every
call is given what is left of the request's deadline (-t from its start,
cut at the end of -z): a server that dribbles its answer cannot stretch a
request past either.
]]
local Call = {}
Call.__index = Call

local function new_call(conn, deadline)
  conn:settimeout(nil)
  return setmetatable({ conn = conn, deadline = deadline, bytes = 0 }, Call)
end

function Call:limit()
  if self.deadline then
    local left = self.deadline - go.now()
    if left <= 0 then fail("read", "timeout", self.bytes == 0) end
    self.conn:settimeout(left)
  end
end

function Call:write(s)
  self:limit()
  local ok, err = self.conn:write(s)
  if not ok then fail("write", err, true) end
end

function Call:line()
  self:limit()
  local line, err = self.conn:readline(MAX_LINE)
  if not line then fail("read", err, self.bytes == 0) end
  self.bytes = self.bytes + #line + 2
  return line
end

-- Up to n bytes; nil at the end of the stream if `eof_ok`.
function Call:read(n, eof_ok)
  self:limit()
  local data, err = self.conn:read(n)
  if not data then
    if eof_ok and err == "closed" then return nil end
    fail("read", err, self.bytes == 0)
  end
  self.bytes = self.bytes + #data
  return data
end

-- Exactly n bytes, read 64 KiB at a time and dropped.
function Call:skip(n)
  while n > 0 do n = n - #self:read(math.min(n, 65536)) end
end

-- Send REQUEST and read its response.  Returns the status code and whether
-- the server keeps the connection open; the bytes read are in call.bytes.
local function exchange(call)
  call:write(REQUEST)
  local code, minor, fields
  repeat   -- skip interim (1xx) answers
    local m, c = call:line():match("^HTTP/1%.(%d) (%d%d%d)")
    if not m then fail("bad response", "status line") end
    minor, code = tonumber(m), tonumber(c)
    fields = {}
    for i = 1, MAX_FIELDS + 1 do
      local h = call:line()
      if h == "" then break end
      if i > MAX_FIELDS then fail("bad response", "too many header fields") end
      local name, value = split_field(h)
      if not name then fail("bad response", "header line") end
      fields[name:lower()] = value
    end
  until code >= 200 or code == 101

  local conn_hdr = (fields.connection or ""):lower()
  local keep = (minor >= 1 and not conn_hdr:find("close", 1, true))
               or (minor == 0 and conn_hdr:find("keep-alive", 1, true) ~= nil)
  local te, cl = fields["transfer-encoding"], fields["content-length"]
  if opts.method == "HEAD" or code == 204 or code == 304 or code < 200 then
    -- no body
  elseif te and te:lower():find("chunked", 1, true) then
    while true do
      local hex = call:line():match("^%x+")
      if not hex or #hex > 15 then fail("bad response", "chunk size") end
      local size = tonumber(hex, 16)
      if size == 0 then break end
      call:skip(size)
      if call:line() ~= "" then fail("bad response", "chunk end") end
    end
    repeat until call:line() == ""   -- the trailer
  elseif cl then
    local size = cl:match("^%d+$") and #cl <= 15 and tonumber(cl)
    if not size then fail("bad response", "content-length") end
    call:skip(size)
  else   -- the body ends when the connection does
    repeat until not call:read(65536, true)
    keep = false
  end
  return code, keep
end

-- One connection's goroutine: `quota` requests (nil with -z), or until
-- `deadline` (nil with -n).
local function worker(st, quota, deadline)
  local conn, reused, retried
  local function drop()
    if conn then conn:close(); conn = nil end
  end
  while (not quota or st.done < quota) and (not deadline or go.now() < deadline) do
    if not conn then
      local err
      local t = opts.timeout
      if deadline then t = math.min(t or math.huge, math.max(deadline - go.now(), 0.001)) end
      conn, err = go.net.dial(address, { timeout = t })
      reused = false
      if not conn then
        if deadline and go.now() >= deadline then break end
        record_error(st, "dial: " .. err)
        goto next
      end
    end
    do
      local t0 = go.now()
      local until_ = opts.timeout and t0 + opts.timeout
      if deadline then until_ = math.min(until_ or math.huge, deadline) end
      local call = new_call(conn, until_)
      local ok, code, keep = pcall(exchange, call)
      local t1 = go.now()
      if ok then
        record(st, t1 - t0, code, call.bytes)
        retried = false
        reused = true
        if not keep or opts.nokeepalive then drop() end
      else
        drop()
        if deadline and t1 >= deadline then break end   -- cut short by the end
        if type(code) ~= "table" then error(code, 0) end   -- a bug: let it show
        -- A kept-alive connection the server closed while it was idle:
        -- send the request again on a new one, once, as net/http does.
        if not (code.early and reused and not retried) then
          record_error(st, code.kind)
          retried = false
        else
          retried = true
        end
      end
    end
    ::next::
  end
  drop()
end

-- Is stderr a terminal?  (The shell's `test -t 2` sees our stderr.)
local tty = not opts.quiet and os.execute("test -t 2") == true

local stats = {}
local function total_done()
  local n = 0
  for _, st in ipairs(stats) do n = n + st.done end
  return n
end

-- The progress line: redrawn in place on a terminal, a plain line a second
-- otherwise.  Returns a function that stops it.
local function progress(start, goal, deadline)
  if opts.quiet then return function() end end
  local stop = go.chan()
  local finished = go.chan()
  go(function()
    local tick = go.ticker(tty and 0.25 or 1)
    local last_n, last_t = 0, start
    while go.select{ stop, tick.c } == 2 do
      local now, n = go.now(), total_done()
      local rate = (n - last_n) / (now - last_t)
      last_n, last_t = n, now
      local part = deadline and (now - start) / (deadline - start) or n / goal
      part = math.min(part, 1)
      local line = string.format("%8d requests  %9.1f req/s  %6.1f s  %3d%%",
                                 n, rate, now - start, math.floor(part * 100))
      if tty then
        local width = 20
        local bar = ("="):rep(math.floor(part * width))
        io.stderr:write("\r", line, "  [", bar, (" "):rep(width - #bar), "]")
      else
        io.stderr:write(line, "\n")
      end
    end
    tick:stop()
    if tty then io.stderr:write("\r\27[K") end
    finished:send(true)
  end)
  return function()
    stop:close()
    finished:recv()
  end
end

-- Run.
local start = go.now()
local deadline = opts.z and start + opts.z
local wg = go.waitgroup()
for i = 1, opts.c do
  local st = new_stats()
  stats[i] = st
  local quota = not deadline and (opts.n // opts.c + (i <= opts.n % opts.c and 1 or 0)) or nil
  wg:add(1)
  go(function()
    worker(st, quota, deadline)
    wg:done()
  end)
end
local stop_progress = progress(start, opts.n, deadline)
wg:wait()
local elapsed = go.now() - start
stop_progress()

-- Add up the goroutines' results.
local hist, status, errors = {}, {}, {}
local ok_count, bytes, lat_sum, lat_min, lat_max = 0, 0, 0, math.huge, 0
for _, st in ipairs(stats) do
  for b, n in pairs(st.hist) do hist[b] = (hist[b] or 0) + n; ok_count = ok_count + n end
  for c, n in pairs(st.status) do status[c] = (status[c] or 0) + n end
  for e, n in pairs(st.errors) do errors[e] = (errors[e] or 0) + n end
  bytes = bytes + st.bytes
  lat_sum = lat_sum + st.lat_sum
  lat_min = math.min(lat_min, st.lat_min)
  lat_max = math.max(lat_max, st.lat_max)
end

local function keys(t, cmp)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks, cmp)
  return ks
end

local function ms(seconds)
  return string.format("%.3f ms", seconds * 1e3)
end

local function human_bytes(n)
  for _, u in ipairs({ "B", "KiB", "MiB", "GiB" }) do
    if n < 1024 or u == "GiB" then return string.format("%.2f %s", n, u) end
    n = n / 1024
  end
end

local out = {}
local function say(fmt, ...) out[#out + 1] = string.format(fmt, ...) end

local nerrors = 0
for _, n in pairs(errors) do nerrors = nerrors + n end
say("Summary:")
say("  Target:\t%s %s, %d connections, %s", opts.method, opts.url, opts.c,
    deadline and string.format("for %g s", opts.z) or string.format("%d requests", opts.n))
say("  Total:\t%.4f s", elapsed)
say("  Responses:\t%d", ok_count)
say("  Errors:\t%d", nerrors)
say("  Requests/sec:\t%.2f", ok_count / elapsed)
say("  Transfer/sec:\t%s", human_bytes(bytes / elapsed))

if ok_count > 0 then
  say("")
  say("Latency:")
  say("  Fastest:\t%s", ms(lat_min))
  say("  Average:\t%s", ms(lat_sum / ok_count))
  say("  Slowest:\t%s", ms(lat_max))

  -- Percentiles from the histogram; the maximum is exact.
  local order = keys(hist)
  local function percentile(p)
    local want, seen = math.max(1, math.ceil(ok_count * p / 100)), 0
    for _, b in ipairs(order) do
      seen = seen + hist[b]
      if seen >= want then
        return math.min(math.max(bucket_value(b) / 1e6, lat_min), lat_max)
      end
    end
    return lat_max
  end
  say("")
  say("Latency distribution:")
  for _, p in ipairs({ 10, 25, 50, 75, 90, 95, 99, 99.9 }) do
    say("  p%-5s\t%s", tostring(p), ms(percentile(p)))
  end
  say("  max   \t%s", ms(lat_max))

  -- The histogram in text: rows spaced evenly on a log scale from the
  -- fastest to the slowest, as latencies have long tails.
  local lo, hi = math.max(lat_min, 1e-6), math.max(lat_max, 1e-6)
  local rows, counts = hi > lo * 1.01 and 12 or 1, {}
  local ratio = (hi / lo) ^ (1 / rows)
  local bounds = {}
  for r = 1, rows do bounds[r] = lo * ratio ^ r; counts[r] = 0 end
  bounds[rows] = math.huge
  for _, b in ipairs(order) do
    local v = bucket_value(b) / 1e6
    local r = 1
    while v > bounds[r] do r = r + 1 end
    counts[r] = counts[r] + hist[b]
  end
  local most = math.max(table.unpack(counts))
  say("")
  say("Response time histogram (upper bounds):")
  for r = 1, rows do
    local bound = r == rows and lat_max or bounds[r]
    local bar = ("#"):rep(most > 0 and math.ceil(counts[r] / most * 40) or 0)
    say("  %12s [%d]\t|%s", ms(bound), counts[r], bar)
  end
end

say("")
say("Status code distribution:")
for _, c in ipairs(keys(status)) do say("  [%d]\t%d responses", c, status[c]) end
if nerrors > 0 then
  say("")
  say("Error distribution:")
  for _, e in ipairs(keys(errors, function(a, b) return errors[a] > errors[b] or
                                   (errors[a] == errors[b] and a < b) end)) do
    say("  [%d]\t%s", errors[e], e)
  end
end
print(table.concat(out, "\n"))
