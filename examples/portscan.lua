#!/usr/bin/env lua5.4
--[[
portscan.lua — a TCP connect scanner written with goro.

  lua5.4 examples/portscan.lua [-c conns] [-t seconds] [-b] [-a] host [ports]

A pool of -c goroutines takes ports from a channel and tries to connect to
each: a connection means "open", a refusal "closed", no answer within -t
seconds "filtered".  With -b, an open port is given a moment to say who it
is (the first line a server sends unasked: SSH, SMTP, FTP ...).

The ports are a list of numbers and ranges: "22,80,8000-8100" (default
1-1024).  Open ports are printed in order with their service name from
/etc/services; with -a, every port is.
]]

local go = require "goro"

local USAGE = [[
usage: lua5.4 examples/portscan.lua [options] host [ports]
  ports         numbers and ranges, e.g. 22,80,8000-8100 (default 1-1024)
  -c N          ports tried at once, one goroutine each (default 100)
  -t SECONDS    connect timeout: no answer means "filtered" (default 1)
  -b            read a banner from open ports (waits up to -t for it)
  -a            list closed and filtered ports too
  -h            this help]]

local function die(msg)
  io.stderr:write("portscan: ", msg, "\n", USAGE, "\n")
  os.exit(2)
end

local opts = { c = 100, timeout = 1 }
do
  local rest = {}
  local i = 1
  while i <= #arg do
    local a = arg[i]
    local function value()
      i = i + 1
      return arg[i] or die("option " .. a .. " needs a value")
    end
    if a == "-c" then
      opts.c = math.tointeger(tonumber(value()))
      if not opts.c or opts.c < 1 then die("-c must be a positive integer") end
    elseif a == "-t" then
      opts.timeout = tonumber(value())
      if not opts.timeout or opts.timeout <= 0 then die("-t must be a positive number") end
    elseif a == "-b" then opts.banner = true
    elseif a == "-a" then opts.all = true
    elseif a == "-h" or a == "--help" then print(USAGE) os.exit(0)
    elseif a:sub(1, 1) == "-" then die("unknown option " .. a)
    else rest[#rest + 1] = a end
    i = i + 1
  end
  if #rest < 1 or #rest > 2 then die("need a host and, optionally, ports") end
  opts.host, opts.ports = rest[1], rest[2] or "1-1024"
end

-- "22,80,8000-8100" -> sorted list of distinct ports
local function parse_ports(spec)
  local seen, list = {}, {}
  for item in spec:gmatch("[^,]+") do
    local a, b = item:match("^%s*(%d+)%s*%-%s*(%d+)%s*$")
    if not a then a = item:match("^%s*(%d+)%s*$"); b = a end
    a, b = tonumber(a), tonumber(b)
    if not a or a < 1 or b > 65535 or a > b then die("bad port or range " .. item) end
    for p = a, b do
      if not seen[p] then seen[p] = true; list[#list + 1] = p end
    end
  end
  if #list == 0 then die("no ports in " .. spec) end
  table.sort(list)
  return list
end

-- Service names from /etc/services, if there is one: port -> name (tcp).
local function services()
  local names = {}
  local f = io.open("/etc/services")
  if f then
    for line in f:lines() do
      local name, port = line:match("^([%w%-_.]+)%s+(%d+)/tcp")
      if name and not names[tonumber(port)] then names[tonumber(port)] = name end
    end
    f:close()
  end
  return names
end

local ports = parse_ports(opts.ports)

-- Resolve the host once: a scan is of one address.
local ip = opts.host:match("^%[(.*)%]$") or opts.host
do
  local ips, err = go.net.resolve(ip)
  if not ips or #ips == 0 then die("cannot resolve " .. opts.host .. ": " .. tostring(err)) end
  ip = ips[1]
end
local function address(port)
  return (ip:find(":", 1, true) and "[" .. ip .. "]" or ip) .. ":" .. port
end

-- What connecting to `port` finds: "open" (and the banner, if asked for),
-- "closed", "filtered", or "error" and the system's message.
local function probe(port)
  local conn, err = go.net.dial(address(port), { timeout = opts.timeout })
  -- Out of file descriptors is our shortage, not the port's state: wait
  -- for other probes to give theirs back, and try again.
  local pause = 0.01
  while not conn and err == "too many open files" do
    go.sleep(pause)
    pause = math.min(pause * 2, 1)
    conn, err = go.net.dial(address(port), { timeout = opts.timeout })
  end
  if not conn then
    if err == "connection refused" then return "closed" end
    if err == "timeout" then return "filtered" end
    return "error", err
  end
  local banner
  if opts.banner then
    conn:settimeout(opts.timeout)
    local data = conn:read(256)
    if data then
      banner = data:match("^[^\r\n]*"):gsub("[^%g ]", "?")
    end
  end
  conn:close()
  return "open", banner
end

local start = go.now()
local todo, results = go.chan(opts.c), go.chan(opts.c)
go(function()   -- the ports, to whichever worker is free
  for _, p in ipairs(ports) do todo:send(p) end
  todo:close()
end)
local wg = go.waitgroup()
for _ = 1, math.min(opts.c, #ports) do
  wg:add(1)
  go(function()
    for port in todo:iter() do
      local state, detail = probe(port)
      results:send({ port = port, state = state, detail = detail })
    end
    wg:done()
  end)
end
go(function()
  wg:wait()
  results:close()
end)

local found, counts = {}, { open = 0, closed = 0, filtered = 0, error = 0 }
for r in results:iter() do
  found[#found + 1] = r
  counts[r.state] = counts[r.state] + 1
end
local elapsed = go.now() - start
table.sort(found, function(a, b) return a.port < b.port end)

local function row(...)
  local line = string.format("%-10s %-9s %-16s %s", ...)
  print((line:gsub("%s+$", "")))
end

local names = services()
row("PORT", "STATE", "SERVICE", opts.banner and "BANNER" or "")
for _, r in ipairs(found) do
  if r.state == "open" or opts.all then
    row(r.port .. "/tcp", r.state, names[r.port] or "", r.detail or "")
  end
end
print(string.format("scanned %d ports of %s in %.2f s: %d open, %d closed, %d filtered%s",
  #ports, ip, elapsed, counts.open, counts.closed, counts.filtered,
  counts.error > 0 and string.format(", %d errors", counts.error) or ""))
