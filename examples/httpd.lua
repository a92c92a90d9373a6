#!/usr/bin/env lua5.4
--[[
httpd.lua — a small HTTP/1.1 file server written with goro.

  lua5.4 examples/httpd.lua [-a host:port] [-r dir] [-i seconds] [-v]

One goroutine per connection, as Go's net/http does: it reads a request,
answers it, and reads the next one on the same connection (keep-alive).
Requests are read from the connection's buffer one at a time, so pipelined
requests are answered in order.  A request may carry a body with
Content-Length or chunked transfer coding; `POST /echo` sends it back.
Everything else is a file under the root directory, with its MIME type.

A request that breaks the protocol gets its 4xx answer and the connection
is closed: nothing a client sends can stop the server.  Every read is
bounded: a line by MAX_LINE bytes, a request's headers by MAX_HEADERS and
HEADER_TIMEOUT, a body by MAX_BODY, and a connection waiting for its next
request by the idle timeout (-i).  A body is read 64 KiB at a time, so that
a connection's buffer stays small whatever it was sent.

Files are read with Lua's io library, whose calls block the thread while
holding the Lua token: the root must hold regular files and directories
only (a FIFO there would stop every goroutine until someone wrote to it).

Prints "httpd: serving <dir> on http://<address>/" once it listens, so that
a script started with `-a 127.0.0.1:0` learns its port.
]]

local go = require "goro"

local MAX_LINE = 8192               -- request line, header line, chunk size line
local MAX_HEADERS = 100             -- header fields in a request (and trailer)
local MAX_BODY = 16 * 1024 * 1024   -- bytes of a request body, decoded
local HEADER_TIMEOUT = 10           -- seconds from the end of a request line to the end of its body
local WRITE_TIMEOUT = 30            -- seconds one write of a response may wait for the client
local CHUNK = 64 * 1024             -- bytes read from a file at a time

local USAGE = [[
usage: lua5.4 examples/httpd.lua [options]
  -a host:port   address to listen on (default 127.0.0.1:8080; port 0 picks one)
  -r dir         directory to serve files from (default .)
  -i seconds     close a connection idle this long between requests (default 30)
  -v             log each request on stdout
  -h             this help]]

local function die(msg)
  io.stderr:write("httpd: ", msg, "\n", USAGE, "\n")
  os.exit(2)
end

local opts = { addr = "127.0.0.1:8080", root = ".", idle = 30, verbose = false }
do
  local i = 1
  while i <= #arg do
    local a = arg[i]
    local function value()
      i = i + 1
      return arg[i] or die("option " .. a .. " needs a value")
    end
    if a == "-a" then opts.addr = value()
    elseif a == "-r" then opts.root = value():gsub("/+$", "")
    elseif a == "-i" then opts.idle = tonumber(value()) or die("-i needs a number of seconds")
    elseif a == "-v" then opts.verbose = true
    elseif a == "-h" or a == "--help" then print(USAGE) os.exit(0)
    else die("unknown argument " .. a) end
    i = i + 1
  end
  if opts.root == "" then opts.root = "/" end
  if opts.idle <= 0 then die("-i must be positive") end
end

local REASONS = {
  [100] = "Continue", [200] = "OK", [204] = "No Content", [301] = "Moved Permanently",
  [400] = "Bad Request", [403] = "Forbidden", [404] = "Not Found",
  [405] = "Method Not Allowed", [408] = "Request Timeout",
  [413] = "Content Too Large", [414] = "URI Too Long",
  [417] = "Expectation Failed", [431] = "Request Header Fields Too Large",
  [500] = "Internal Server Error", [501] = "Not Implemented",
  [505] = "HTTP Version Not Supported",
}

local MIME = {
  html = "text/html; charset=utf-8", htm = "text/html; charset=utf-8",
  css = "text/css; charset=utf-8", js = "text/javascript; charset=utf-8",
  mjs = "text/javascript; charset=utf-8", json = "application/json",
  txt = "text/plain; charset=utf-8", md = "text/markdown; charset=utf-8",
  csv = "text/csv; charset=utf-8", xml = "application/xml",
  lua = "text/x-lua; charset=utf-8", c = "text/x-c; charset=utf-8",
  h = "text/x-c; charset=utf-8", svg = "image/svg+xml", png = "image/png",
  jpg = "image/jpeg", jpeg = "image/jpeg", gif = "image/gif",
  webp = "image/webp", avif = "image/avif", ico = "image/vnd.microsoft.icon",
  pdf = "application/pdf", wasm = "application/wasm", zip = "application/zip",
  gz = "application/gzip", tar = "application/x-tar",
  woff = "font/woff", woff2 = "font/woff2", ttf = "font/ttf", otf = "font/otf",
  mp3 = "audio/mpeg", ogg = "audio/ogg", wav = "audio/wav",
  mp4 = "video/mp4", webm = "video/webm",
}

local function mime_type(path)
  local ext = path:match("%.([%w]+)$")
  return ext and MIME[ext:lower()] or "application/octet-stream"
end

-- The methods of RFC 9110: any other gets 501 Not Implemented.
local KNOWN_METHODS = { GET = true, HEAD = true, POST = true, PUT = true, DELETE = true,
                        CONNECT = true, OPTIONS = true, TRACE = true, PATCH = true }

-- The characters of a token (RFC 9110, 5.6.2): methods and field names.
local TOKEN = "[%w!#$%%&'*+.^_`|~-]+"

-- A field line's name and its value without the blanks around it, or nil.
-- In linear time: the obvious pattern, ":[ \t]*(.-)[ \t]*$", tries every
-- end of the value against the blanks after it, so that a long run of
-- blanks inside a value costs its length squared (8 KiB of blanks: 0.3 s
-- a line).  Here a pattern finds where the value starts and a loop over
-- its last bytes where it ends.
local function split_field(line)
  local name, first = line:match("^(" .. TOKEN .. "):[ \t]*()")
  if not name then return nil end
  local last = #line
  while last >= first do
    local b = line:byte(last)
    if b ~= 32 and b ~= 9 then break end
    last = last - 1
  end
  return name, line:sub(first, last)
end

-- An answer that ends the connection; `error` carries it out of the parser.
local function reject(status)
  error({ status = status }, 0)
end

-- Give `conn` what is left of the request's deadline, or reject it.
local function until_deadline(conn, deadline)
  local left = deadline - go.now()
  if left <= 0 then reject(408) end
  conn:settimeout(left)
end

-- What a failed read means: 408 for the deadline, `too_long` for a line
-- over MAX_LINE bytes, and nobody to answer if the peer went away.
local function read_failed(err, too_long)
  if err == "line too long" then reject(too_long) end
  reject(err == "timeout" and 408 or nil)
end

-- `conn`'s next line, or n bytes, within the request's deadline.
local function readline(conn, deadline, too_long)
  until_deadline(conn, deadline)
  local line, err = conn:readline(MAX_LINE)
  return line or read_failed(err, too_long)
end

local function readn(conn, deadline, n)
  until_deadline(conn, deadline)
  local data, err = conn:readn(n)
  return data or read_failed(err)
end

-- Header fields until the empty line, into `fields` (names in lower case;
-- repeated fields joined with ", ", as RFC 9110 5.3 allows).
local function read_fields(conn, deadline, fields)
  for _ = 1, MAX_HEADERS do
    local line = readline(conn, deadline, 431)
    if line == "" then return fields end
    -- No space before the colon, no obsolete line folding (RFC 9112, 5).
    local name, value = split_field(line)
    if not name or value:find("[%z\r\n]") then reject(400) end
    name = name:lower()
    local old = fields[name]
    if old and (name == "host" or name == "content-length") then
      if name == "host" or old ~= value then reject(400) end
    elseif old then
      value = old .. ", " .. value
    end
    fields[name] = value
  end
  reject(431)
end

-- Does the comma-separated list `s` (Connection, for instance) hold `token`?
local function has_token(s, token)
  for t in (s or ""):gmatch("[^,%s]+") do
    if t:lower() == token then return true end
  end
  return false
end

-- A body being put together from pieces: a piece per read or per chunk,
-- joined into blocks every 256 pieces, so that a body sent as millions of
-- one-byte chunks costs its bytes, not a table slot each.
local function new_body()
  return { blocks = {}, parts = {} }
end

local function add_piece(body, piece)
  local parts = body.parts
  parts[#parts + 1] = piece
  if #parts == 256 then
    body.blocks[#body.blocks + 1] = table.concat(parts)
    body.parts = {}
  end
end

local function body_string(body)
  return table.concat(body.blocks) .. table.concat(body.parts)
end

-- n bytes of body into `body`, 64 KiB at a time.
local function read_body(conn, deadline, body, n)
  while n > 0 do
    until_deadline(conn, deadline)
    local piece, err = conn:read(math.min(n, 64 * 1024))
    if not piece then read_failed(err) end
    add_piece(body, piece)
    n = n - #piece
  end
end

local function read_chunked(conn, deadline)
  local body, size = new_body(), 0
  while true do
    local line = readline(conn, deadline, 400)
    local hex = line:match("^(%x+)[ \t]*;") or line:match("^(%x+)[ \t]*$")
    if not hex or #hex > 8 then reject(400) end
    local n = tonumber(hex, 16)
    if n == 0 then break end
    size = size + n
    if size > MAX_BODY then reject(413) end
    read_body(conn, deadline, body, n)
    if readn(conn, deadline, 2) ~= "\r\n" then reject(400) end
  end
  read_fields(conn, deadline, {})   -- the trailer: read, and ignored
  return body_string(body)
end

-- Read one request from `conn`.  Returns the request; nil at a clean end
-- of the connection (closed, or idle too long before a request began);
-- raises a rejection for anything else.
local function read_request(conn)
  local line, err
  conn:settimeout(opts.idle)
  for _ = 1, 4 do   -- a server should skip empty lines before a request
    line, err = conn:readline(MAX_LINE)
    if line ~= "" then break end
  end
  if not line then
    if err == "line too long" then reject(414) end
    return nil
  end
  local deadline = go.now() + HEADER_TIMEOUT
  -- The target is visible ASCII only: a control byte in it (a NUL that
  -- would cut a file name short, a CR or LF) is refused here.
  local method, target, major, minor =
    line:match("^(" .. TOKEN .. ") ([!-~]+) HTTP/(%d)%.(%d)$")
  if not method then reject(400) end
  if major ~= "1" then reject(505) end
  if not KNOWN_METHODS[method] then reject(501) end
  local req = { method = method, target = target, minor = tonumber(minor),
                headers = read_fields(conn, deadline, {}) }
  local h = req.headers
  if req.minor >= 1 and not h.host then reject(400) end

  -- Keep-alive is the default of HTTP/1.1 only.
  if req.minor >= 1 then
    req.keep = not has_token(h.connection, "close")
  else
    req.keep = has_token(h.connection, "keep-alive")
  end

  -- The body: chunked, Content-Length, or none.  Both at once is how
  -- requests are smuggled past proxies; refuse it (RFC 9112, 6.3).
  local te, cl = h["transfer-encoding"], h["content-length"]
  if te and cl then reject(400) end
  if te and (req.minor == 0 or te:lower() ~= "chunked") then reject(501) end
  if cl and (not cl:match("^%d+$") or #cl > 15) then reject(400) end
  local length = cl and tonumber(cl) or 0
  if length > MAX_BODY then reject(413) end
  if te or length > 0 then
    local expect = h.expect
    if expect and expect:lower() ~= "100-continue" then reject(417) end
    if expect and req.minor >= 1 then
      conn:write("HTTP/1.1 100 Continue\r\n\r\n")
    end
    if te then
      req.body = read_chunked(conn, deadline)
    else
      local body = new_body()
      read_body(conn, deadline, body, length)
      req.body = body_string(body)
    end
  end
  return req
end

local function http_date()
  return os.date("!%a, %d %b %Y %H:%M:%S GMT")
end

-- Write the head of a response to `req` and, if given, its body.
-- `fields` lists extra header lines.  Returns what conn:write returns.
local function respond(conn, req, status, ctype, length, fields, body)
  req.status = status
  local head = {
    "HTTP/1.1 " .. status .. " " .. REASONS[status],
    "Date: " .. http_date(),
    "Server: goro-httpd",
  }
  if ctype then head[#head + 1] = "Content-Type: " .. ctype end
  if status ~= 204 then   -- a 204 has no body, and no length (RFC 9110, 8.6)
    head[#head + 1] = "Content-Length: " .. length
  end
  for _, f in ipairs(fields or {}) do head[#head + 1] = f end
  if not req.keep then
    head[#head + 1] = "Connection: close"
  elseif req.minor == 0 then   -- HTTP/1.0 keeps a connection only when told
    head[#head + 1] = "Connection: keep-alive"
  end
  head[#head + 1] = "\r\n"
  return conn:write(table.concat(head, "\r\n") .. (body or ""))
end

local function respond_text(conn, req, status, fields)
  local text = status .. " " .. REASONS[status] .. "\n"
  return respond(conn, req, status, "text/plain; charset=utf-8", #text, fields,
                 req.method ~= "HEAD" and text or nil)
end

-- The path of a request target under the root, or nil for a target that
-- is not a clean absolute path.  "." and ".." are resolved; ".." above the
-- root is refused rather than clamped.
local function local_path(target)
  local path = target
  local authority, rest = target:match("^[hH][tT][tT][pP][sS]?://([^/?#]+)(.*)$")
  if authority then   -- absolute form: the path, "/" if there is none
    path = rest:sub(1, 1) == "/" and rest or "/" .. rest
  end
  path = path:match("^[^?#]*")
  if path:sub(1, 1) ~= "/" then return nil end
  path = path:gsub("%%(%x%x)", function(hex) return string.char(tonumber(hex, 16)) end)
  -- No control byte, decoded or not, gets into a file name or a header.
  if path:find("[%c\127]") then return nil end
  local parts = {}
  for seg in path:gmatch("[^/]+") do
    if seg == ".." then
      if #parts == 0 then return nil end
      parts[#parts] = nil
    elseif seg ~= "." then
      parts[#parts + 1] = seg
    end
  end
  local clean = "/" .. table.concat(parts, "/")
  if path:sub(-1) == "/" and clean ~= "/" then clean = clean .. "/" end
  return clean
end

-- `path` with what may not stand in a Location header percent-encoded.
local function url_path(path)
  return (path:gsub("[^%w%-._~/!$&'()*+,;=:@]", function(c)
    return string.format("%%%02X", c:byte())
  end))
end

-- Serve the file at `path` (relative to the root), streaming it in CHUNKs.
-- File reads are blocking C calls: they hold the Lua token for the time of
-- one read of a file, which the page cache usually makes short.
local function serve_file(conn, req, path)
  local file = opts.root .. path
  if path:sub(-1) == "/" then file = file .. "index.html" end
  local f, err, code = io.open(file, "rb")
  if not f then
    -- ENOENT, ENOTDIR: not there; EACCES: forbidden; others (EMFILE, EIO):
    -- the server's trouble.
    local status = (code == 2 or code == 20) and 404 or code == 13 and 403 or 500
    return respond_text(conn, req, status)
  end
  local first, rerr = f:read(CHUNK)
  if not first and rerr then   -- a directory: read(2) says EISDIR
    f:close()
    if path:sub(-1) ~= "/" then
      return respond_text(conn, req, 301, { "Location: " .. url_path(path) .. "/" })
    end
    return respond_text(conn, req, 404)
  end
  local size = f:seek("end")
  f:seek("set", #(first or ""))
  local ctype = mime_type(file)
  if req.method == "HEAD" then
    f:close()
    return respond(conn, req, 200, ctype, size)
  end
  -- Exactly `size` bytes, whatever happens to the file meanwhile: more
  -- would be taken for the next response, fewer would leave the client
  -- waiting, so a file that shrank ends the connection.
  first = first and first:sub(1, size)
  local left = size - #(first or "")
  local ok, werr = respond(conn, req, 200, ctype, size, nil, first)
  while ok and left > 0 do
    local piece = f:read(math.min(CHUNK, left))
    if not piece then
      req.keep = false
      break
    end
    left = left - #piece
    ok, werr = conn:write(piece)
  end
  f:close()
  return ok, werr
end

-- Answer one request.  Returns what conn:write returned.
local function handle(conn, req)
  if req.method == "OPTIONS" then   -- "OPTIONS *" asks about the server
    return respond(conn, req, 204, nil, 0, { "Allow: GET, HEAD, OPTIONS, POST, PUT" })
  end
  local path = local_path(req.target)
  if not path then
    req.keep = false
    return respond_text(conn, req, 400)
  end
  if path == "/echo" then
    if req.method ~= "POST" and req.method ~= "PUT" then
      return respond_text(conn, req, 405, { "Allow: POST, PUT" })
    end
    local body = req.body or ""
    return respond(conn, req, 200, req.headers["content-type"] or "application/octet-stream",
                   #body, nil, body)
  end
  if req.method ~= "GET" and req.method ~= "HEAD" then
    return respond_text(conn, req, 405, { "Allow: GET, HEAD" })
  end
  return serve_file(conn, req, path)
end

-- With -v, one line per answer: time, client, request line, status.
local function log(conn, req, werr)
  if opts.verbose then
    io.stdout:write(string.format("%s %s %q %s%s\n", os.date("!%Y-%m-%dT%H:%M:%SZ"),
      conn:remoteaddr() or "-", req.method and (req.method .. " " .. req.target) or "-",
      req.status, werr and " (" .. werr .. ")" or ""))
    io.stdout:flush()
  end
end

-- Close a connection we are refusing.  Whatever the client sent that was
-- not read would make the kernel answer with a reset, which can destroy
-- our answer before the client reads it.  So, as Go's net/http does, shut
-- our writing half (the client sees the end of our answer and closes),
-- and read and discard for a short while before closing.
local function linger_close(conn)
  conn:closewrite()
  local until_ = go.now() + 0.5
  for _ = 1, 64 do
    local left = until_ - go.now()
    if left <= 0 then break end
    conn:settimeout(left)
    if not conn:read() then break end
  end
  conn:close()
end

-- A connection's goroutine: requests until one of them, or the client,
-- ends it.
local function serve_conn(conn)
  while true do
    local ok, req = pcall(read_request, conn)
    if not ok then
      local status = type(req) == "table" and req.status
      if type(req) ~= "table" then   -- a bug here, not the client's fault
        io.stderr:write("httpd: ", tostring(req), "\n")
        status = 500
      end
      if status then
        local stub = { keep = false }
        conn:settimeout(1)
        local _, werr = respond_text(conn, stub, status)
        log(conn, stub, werr)
        return linger_close(conn)
      end
      break
    end
    if not req then break end
    conn:settimeout(WRITE_TIMEOUT)   -- not what was left of the request's deadline
    local answered, err = handle(conn, req)
    log(conn, req, err)
    if not answered or not req.keep then break end
  end
  conn:close()
end

local l, err = go.net.listen(opts.addr)
if not l then
  io.stderr:write("httpd: listen ", opts.addr, ": ", err, "\n")
  os.exit(1)
end
io.stdout:write("httpd: serving ", opts.root, " on http://", l:addr(), "/\n")
io.stdout:flush()

-- The accept loop.  When accept fails for want of resources (EMFILE, out
-- of memory), back off as net/http does, from 5 ms to 1 s, and retry.
local backoff = 0
while true do
  local conn, aerr = l:accept()
  if conn then
    backoff = 0
    go(function()
      local ok, e = pcall(serve_conn, conn)
      if not ok then
        io.stderr:write("httpd: ", tostring(e), "\n")
        conn:close()
      end
    end)
  elseif aerr == "closed" then
    break
  else
    backoff = backoff == 0 and 0.005 or math.min(backoff * 2, 1)
    io.stderr:write("httpd: accept: ", aerr, "; retrying in ", backoff, " s\n")
    go.sleep(backoff)
  end
end
