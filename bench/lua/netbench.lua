-- bench/lua/netbench.lua — what the Lua programs of bench/net.sh share: the
-- HTTP/1.1 "hello" protocol of W9 (one parser for goro, luv and cqueues, so
-- that they do the same work per request), W6's sleepers, the command line
-- and the LISTEN and RESULT lines.
--
-- The HTTP server is minimal but correct for what a client may send it:
-- requests are read up to their blank line; a Content-Length body is
-- skipped; keep-alive is the default of HTTP/1.1 ("Connection: close" and
-- HTTP/1.0 close after the answer); pipelined requests are answered in
-- order, in one write; a malformed request, a chunked body or a head of
-- more than 64 KiB gets a 400 or 501 and the connection is closed.  Every
-- request is answered `hello`.

local M = {}

local find, match, sub = string.find, string.match, string.sub

M.RESPONSE = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"
local BAD = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
local UNSUPPORTED = "HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
local MAXHEAD = 64 * 1024

local RESPONSE = M.RESPONSE

-- feed(buf) -> out, rest, close
-- buf: the bytes received and not consumed yet.  out: the answers to the
-- complete requests in buf, to write in one go (nil: none yet); rest: what
-- is left of buf (a request not complete yet); close: close the connection
-- once out is written.
function M.feed(buf)
  local pos, len = 1, #buf
  local out, n = nil, 0
  while pos <= len do
    local e = find(buf, "\r\n\r\n", pos, true)
    if not e then
      if len - pos + 1 > MAXHEAD then return (out or "") .. BAD, "", true end
      break
    end
    local minor = match(buf, "^%u+ [^ \r\n]+ HTTP/1%.([01])\r\n", pos)
    if not minor then return (out or "") .. BAD, "", true end
    local close = minor == "0"
    -- Headers, each searched for in this request's head only (pos .. e+1).
    local h = find(buf, "\n[Cc][Oo][Nn][Nn][Ee][Cc][Tt][Ii][Oo][Nn]:[ \t]*[Cc][Ll][Oo][Ss][Ee]", pos)
    if h and h < e then close = true end
    local t = find(buf, "\n[Tt][Rr][Aa][Nn][Ss][Ff][Ee][Rr]%-[Ee][Nn][Cc][Oo][Dd][Ii][Nn][Gg]:", pos)
    if t and t < e then return (out or "") .. UNSUPPORTED, "", true end
    local nxt = e + 4
    local c, cl = find(buf, "\n[Cc][Oo][Nn][Tt][Ee][Nn][Tt]%-[Ll][Ee][Nn][Gg][Tt][Hh]:[ \t]*", pos)
    if c and c < e then
      local digits = match(buf, "^%d+", cl + 1)
      if not digits or #digits > 15 then return (out or "") .. BAD, "", true end
      nxt = nxt + tonumber(digits)
      if nxt - 1 > len then break end      -- the body is not all here yet
    end
    n = n + 1
    out = n == 1 and RESPONSE or out .. RESPONSE
    pos = nxt
    if close then return out, "", true end
  end
  if pos == 1 then return out, buf, false end
  return out, pos > len and "" or sub(buf, pos), false
end

-- The connection handler of a server whose connections block the caller
-- (goro, cqueues): read(c) -> string, or nil at EOF or on an error;
-- write(c, s) -> true, or nil on an error.  kind "echo": write back what
-- is read until EOF; "http": answer through feed, keep-alive.  Closes c.
function M.handler(kind, read, write)
  if kind == "echo" then
    return function(c)
      while true do
        local s = read(c)
        if not s or not write(c, s) then break end
      end
      c:close()
    end
  end
  local feed = M.feed
  return function(c)
    local buf = ""
    while true do
      local s = read(c)
      if not s then break end
      buf = buf == "" and s or buf .. s
      local out, rest, close = feed(buf)
      buf = rest
      if out and not write(c, out) then break end
      if close then break end
    end
    c:close()
  end
end

-- The command line of net_<impl>.lua:
--   w6 [-n N]                 W6, printing RESULT W6 <ms> ms and RESULT W6late <ms> ms
--   serve echo|http [-limit S]   a server; prints LISTEN 127.0.0.1:<port>
-- Returns mode, arg ("echo"/"http" for serve), n, limit.
function M.args(progname, argv)
  local function usage()
    io.stderr:write("usage: ", progname, " w6 [-n N]\n",
                    "       ", progname, " serve echo|http [-limit SECONDS]\n")
    os.exit(2)
  end
  local mode, what, n, limit = argv[1], nil, 100000, 300
  local i = 2
  if mode == "serve" then
    what = argv[2]
    if what ~= "echo" and what ~= "http" then usage() end
    i = 3
  elseif mode ~= "w6" then
    usage()
  end
  while i <= #argv do
    local a, v = argv[i]:gsub("^%-%-", "-"), argv[i + 1]
    if a == "-n" and v then n = math.tointeger(tonumber(v)) or usage()
    elseif a == "-limit" and v then limit = tonumber(v) or usage()
    else usage() end
    i = i + 2
  end
  if n < 1 then usage() end
  return mode, what, n, limit
end

-- The sleep of W6's sleeper i (0-based) of n, in seconds: spread evenly
-- over [0, 1), in a shuffled order (as bench/go/net.go).
function M.w6_delay(i, n)
  return (i * 7919 % n) / n
end

-- W6's two RESULT lines: wall (seconds) and worst lateness (seconds).
function M.w6_result(wall, worst)
  io.write(string.format("RESULT W6 %.1f ms\nRESULT W6late %.3f ms\n", wall * 1e3, worst * 1e3))
  io.flush()
end

-- W6 for a runtime with coroutine-style sleeps: spawn(fn, d) starts fn(d)
-- as a goroutine, sleep(d) parks it, wait() returns once all finished,
-- now() -> seconds on a monotonic clock.  Prints the RESULT lines.
function M.w6(prog, n, spawn, sleep, wait, now)
  local delay = M.w6_delay
  local worst, woke = 0.0, 0
  local function sleeper(d)
    local t0 = now()
    sleep(d)
    local late = now() - t0 - d
    if late < 0 then M.fail(prog, "W6: a sleeper woke %.0f ns early", -late * 1e9) end
    if late > worst then worst = late end
    woke = woke + 1
  end
  local start = now()
  for i = 0, n - 1 do spawn(sleeper, delay(i, n)) end
  wait()
  local wall = now() - start
  if woke ~= n then M.fail(prog, "W6: %d of %d woke", woke, n) end
  M.w6_result(wall, worst)
end

function M.listening(addr)
  io.write("LISTEN ", addr, "\n")
  io.flush()
end

function M.fail(progname, fmt, ...)
  io.stderr:write(progname, ": ", string.format(fmt, ...), "\n")
  io.stderr:flush()
  os.exit(1)
end

return M
