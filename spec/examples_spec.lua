-- The tools of examples/, driven end to end: each runs as its own process
-- (H.spawn), talks to 127.0.0.1 only, and every wait is bounded.
--
--   httpd.lua    against curl, wrk, raw bytes, and random bytes
--   hey.lua      against httpd.lua, and against servers written here
--                that misbehave on purpose
--   portscan.lua against listeners opened here
--   demo.sh      what `make demo` runs

local go = require "goro"
local H = require "spec.helper"

if H.NO_CHILDREN then   -- every spec here runs a child process
  pending("examples: " .. H.NO_CHILDREN)
  return
end

local LIMIT = 10 * H.SLOW   -- seconds any one exchange may take

-- A directory of files for httpd.lua to serve, made once.
local WWW = os.tmpname()
os.remove(WWW)
local FILES = {
  ["index.html"] = "<h1>home</h1>\n",
  ["style.css"] = "body { margin: 0 }\n",
  ["data.json"] = '{"a": 1}\n',
  ["pixel.png"] = "\137PNG\r\n\26\n",
  ["notes.unknownext"] = "?",
  ["empty.txt"] = "",
  ["sub/index.html"] = "<p>sub</p>\n",
  ["sub/deep.txt"] = "deep\n",
}
do
  assert(os.execute("mkdir -p " .. WWW .. "/sub " .. WWW .. "/nodir '" .. WWW .. "/with space'"))
  for name, body in pairs(FILES) do
    local f = assert(io.open(WWW .. "/" .. name, "wb"))
    f:write(body)
    f:close()
  end
  -- 1 MiB and a bit, not periodic: larger than httpd's read chunk.
  local t = {}
  for i = 1, 150000 do t[i] = string.format("%07d", i) end
  FILES["big.bin"] = table.concat(t)
  local f = assert(io.open(WWW .. "/big.bin", "wb"))
  f:write(FILES["big.bin"])
  f:close()
  -- A file outside the root, which no request may reach.
  f = assert(io.open(WWW .. "-secret", "wb"))
  f:write("secret\n")
  f:close()
end

local function httpd(pending, ...)
  local p = H.spawn(pending, { "lua5.4", "examples/httpd.lua", "-a", "127.0.0.1:0", "-r", WWW, ... })
  local addr = p:wait_for("on http://([%d.]+:%d+)/")
  return p, addr
end

-- curl's output: "-D -" puts the head before the body; args are curl's.
local function curl(...)
  local code, out = H.command({ "curl", "-sS", "--max-time", tostring(LIMIT), ... })
  assert.equal(0, code, out)
  return out
end

-- All that arrives on a new connection to addr after writing `bytes`,
-- until the server closes it.  With `done`, our end says it has nothing
-- more to send (closewrite) after the bytes.
local function exchange(addr, bytes, done)
  local c = assert(go.net.dial(addr, { timeout = LIMIT }))
  c:settimeout(LIMIT)
  if #bytes > 0 then c:write(bytes) end
  if done then c:closewrite() end
  local got = {}
  while true do
    local s, err = c:read()
    if not s then
      c:close()
      return table.concat(got), err
    end
    got[#got + 1] = s
  end
end

-- The responses in a byte stream: { status=, headers= (lower-case
-- names), body= } each, bodies delimited by Content-Length; the n-th has
-- no body if heads[n] (an answer to HEAD).
local function responses(raw, heads)
  local list, pos = {}, 1
  while pos <= #raw do
    local head_end = raw:find("\r\n\r\n", pos, true)
    assert(head_end, "a response head without its end: " .. raw:sub(pos))
    local head = raw:sub(pos, head_end - 1)
    local status = tonumber(head:match("^HTTP/1%.1 (%d%d%d) "))
    assert(status, "a bad status line: " .. head)
    local headers = {}
    for name, value in head:gmatch("\r\n([^:\r\n]+): ([^\r\n]*)") do
      headers[name:lower()] = value
    end
    local len = status == 204 and 0 or tonumber(headers["content-length"])
    assert(len, "no Content-Length in " .. head)
    if heads and heads[#list + 1] then len = 0 end
    local r = { status = status, headers = headers, body = raw:sub(head_end + 4, head_end + 3 + len) }
    list[#list + 1] = r
    pos = head_end + 4 + len
  end
  return list
end

describe("examples/httpd.lua", function()
  local proc, addr
  setup(function()
    proc, addr = httpd(pending)
  end)
  teardown(function()
    if proc then proc:kill() end
  end)
  after_each(function()
    -- Whatever the spec did, the server is still there.
    if proc then assert.is_nil(proc:poll("status", 0), "httpd.lua ended: " .. proc:describe()) end
  end)

  describe("with curl", function()
    it("serves a file with its length and type", function()
      local out = curl("-D", "-", "http://" .. addr .. "/index.html")
      local r = responses(out)[1]
      assert.equal(200, r.status)
      assert.equal(FILES["index.html"], r.body)
      assert.equal("text/html; charset=utf-8", r.headers["content-type"])
      assert.equal("goro-httpd", r.headers.server)
      assert.matches("^%a%a%a, %d%d %a%a%a %d%d%d%d %d%d:%d%d:%d%d GMT$", r.headers.date)
    end)

    it("gives each file its MIME type", function()
      local types = {
        ["style.css"] = "text/css; charset=utf-8",
        ["data.json"] = "application/json",
        ["pixel.png"] = "image/png",
        ["notes.unknownext"] = "application/octet-stream",
        ["sub/deep.txt"] = "text/plain; charset=utf-8",
        ["big.bin"] = "application/octet-stream",
      }
      for _, name in ipairs(H.sorted_keys(types)) do
        local out = curl("-o", "/dev/null", "-w", "%{http_code} %{content_type} %{size_download}",
                         "http://" .. addr .. "/" .. name)
        assert.equal("200 " .. types[name] .. " " .. #FILES[name], out, name)
      end
    end)

    it("streams a file larger than its read size intact", function()
      local out = curl("http://" .. addr .. "/big.bin")
      assert.equal(#FILES["big.bin"], #out)
      assert.is_true(out == FILES["big.bin"])
    end)

    it("serves an empty file", function()
      assert.equal("200 0", curl("-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                                 "http://" .. addr .. "/empty.txt"))
    end)

    it("answers HEAD with the length of the body it does not send", function()
      local r = responses(curl("-I", "http://" .. addr .. "/big.bin"), { true })[1]
      assert.equal(200, r.status)
      assert.equal(tostring(#FILES["big.bin"]), r.headers["content-length"])
      assert.equal("", r.body)
      r = responses(curl("-I", "http://" .. addr .. "/nope"), { true })[1]
      assert.equal(404, r.status)
    end)

    it("serves a directory's index.html, and redirects to the slash", function()
      assert.equal(FILES["index.html"], curl("http://" .. addr .. "/"))
      assert.equal(FILES["sub/index.html"], curl("http://" .. addr .. "/sub/"))
      local out = curl("-D", "-", "-o", "/dev/null", "http://" .. addr .. "/sub")
      assert.matches("^HTTP/1%.1 301 ", out)
      assert.matches("\r\nLocation: /sub/\r\n", out)
      assert.equal(FILES["sub/index.html"], curl("-L", "http://" .. addr .. "/sub"))
    end)

    it("answers 404 for what is not there", function()
      for _, path in ipairs({ "/nope", "/sub/nope.txt", "/nodir/", "/index.html/x" }) do
        assert.equal("404", curl("-o", "/dev/null", "-w", "%{http_code}", "http://" .. addr .. path), path)
      end
    end)

    it("never serves a file outside its root", function()
      for _, path in ipairs({ "/../" .. WWW:match("[^/]+$") .. "-secret", "/sub/../../x",
                              "/%2e%2e/x", "/sub/%2E%2E/%2e%2e/etc/passwd", "/a%00b" }) do
        local out = curl("--path-as-is", "-o", "/dev/null", "-w", "%{http_code}", "http://" .. addr .. path)
        assert.equal("400", out, path)
      end
      -- ".." that stays inside the root is fine.
      assert.equal(FILES["sub/deep.txt"], curl("--path-as-is", "http://" .. addr .. "/sub/../sub/./deep.txt"))
    end)

    it("ignores the query string", function()
      assert.equal(FILES["sub/deep.txt"], curl("http://" .. addr .. "/sub/deep.txt?x=1&y=../.."))
    end)

    it("keeps the connection alive across requests", function()
      local out = curl("-o", "/dev/null", "-o", "/dev/null", "-o", "/dev/null",
                       "-w", "%{http_code}:%{num_connects} ",
                       "http://" .. addr .. "/", "http://" .. addr .. "/style.css",
                       "http://" .. addr .. "/nope")
      assert.equal("200:1 200:0 404:0 ", out)
    end)

    it("echoes a body sent with Content-Length", function()
      assert.equal("hello, body", curl("--data-binary", "hello, body", "http://" .. addr .. "/echo"))
      local out = curl("-X", "PUT", "-H", "Content-Type: text/x-test", "-D", "-",
                       "--data-binary", "put", "http://" .. addr .. "/echo")
      local r = responses(out)[1]
      assert.equal("put", r.body)
      assert.equal("text/x-test", r.headers["content-type"])
    end)

    it("echoes a chunked body, and a large one after 100 Continue", function()
      local file = WWW .. "/big.bin"
      local out = curl("-H", "Transfer-Encoding: chunked", "--data-binary", "@" .. file,
                       "http://" .. addr .. "/echo")
      assert.is_true(out == FILES["big.bin"], "chunked echo differs")
      out = curl("-H", "Expect: 100-continue", "--data-binary", "@" .. file, "http://" .. addr .. "/echo")
      assert.is_true(out == FILES["big.bin"], "echo after 100 Continue differs")
    end)

    it("answers 405 with Allow for a method a path does not take", function()
      local out = curl("-X", "DELETE", "-D", "-", "http://" .. addr .. "/index.html")
      assert.matches("^HTTP/1%.1 405 ", out)
      assert.matches("\r\nAllow: GET, HEAD\r\n", out)
      out = curl("-D", "-", "http://" .. addr .. "/echo")
      assert.matches("^HTTP/1%.1 405 ", out)
      assert.matches("\r\nAllow: POST, PUT\r\n", out)
    end)
  end)

  describe("with raw bytes", function()
    it("answers pipelined requests in order", function()
      local req = "GET /index.html HTTP/1.1\r\nHost: t\r\n\r\n" ..
                  "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nfirst" ..
                  "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" ..
                  "3\r\nsec\r\n4;ext=1\r\nond!\r\n0\r\nTrailer: x\r\n\r\n" ..
                  "HEAD /style.css HTTP/1.1\r\nHost: t\r\n\r\n" ..
                  "GET /sub/deep.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
      local raw, err = exchange(addr, req)
      assert.equal("closed", err)
      local rs = responses(raw, { [4] = true })
      assert.equal(5, #rs)
      assert.equal(FILES["index.html"], rs[1].body)
      assert.equal("first", rs[2].body)
      assert.equal("second!", rs[3].body)
      assert.equal(200, rs[4].status)
      assert.equal(tostring(#FILES["style.css"]), rs[4].headers["content-length"])
      assert.equal(FILES["sub/deep.txt"], rs[5].body)
      assert.equal("close", rs[5].headers.connection)
    end)

    it("reads requests split at every byte", function()
      local req = "POST /echo HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n" ..
                  "5\r\nhello\r\n0\r\n\r\n" ..
                  "GET /style.css HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
      local c = assert(go.net.dial(addr))
      c:settimeout(LIMIT)
      for i = 1, #req do assert(c:write(req:sub(i, i))) end
      local got = {}
      while true do
        local s = c:read()
        if not s then break end
        got[#got + 1] = s
      end
      c:close()
      local rs = responses(table.concat(got))
      assert.equal(2, #rs)
      assert.equal("hello", rs[1].body)
      assert.equal(FILES["style.css"], rs[2].body)
    end)

    it("keeps HTTP/1.0 alive only when asked to", function()
      local raw, err = exchange(addr, "GET /style.css HTTP/1.0\r\n\r\n")
      assert.equal("closed", err)
      assert.equal("close", responses(raw)[1].headers.connection)
      raw = exchange(addr, "GET /style.css HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" ..
                           "GET /style.css HTTP/1.0\r\n\r\n")
      local rs = responses(raw)
      assert.equal(2, #rs)
      assert.equal("keep-alive", rs[1].headers.connection)
      assert.equal("close", rs[2].headers.connection)
    end)

    it("takes a target in absolute form", function()
      local raw = exchange(addr, "GET http://a HTTP/1.1\r\nHost: a\r\n\r\n" ..
                                 "GET http://a/style.css?x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
      local rs = responses(raw)
      assert.equal(FILES["index.html"], rs[1].body)
      assert.equal(FILES["style.css"], rs[2].body)
    end)

    it("percent-encodes the Location of a redirect", function()
      local raw = exchange(addr, "GET /with%20space HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
      local r = responses(raw)[1]
      assert.equal(301, r.status)
      assert.equal("/with%20space/", r.headers.location)
    end)

    -- Each bad request: its status; the answer says Connection: close,
    -- and the server closes the connection after it.
    local BAD = {
      ["garbage"] = { "hello\r\n\r\n", 400 },
      ["extra words on the request line"] = { "GET / HTTP/1.1 extra\r\n\r\n", 400 },
      ["no Host in HTTP/1.1"] = { "GET / HTTP/1.1\r\n\r\n", 400 },
      ["two Host fields"] = { "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400 },
      ["space before the colon"] = { "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 400 },
      ["a header without a colon"] = { "GET / HTTP/1.1\r\nHost: a\r\nnocolon\r\n\r\n", 400 },
      ["obsolete line folding"] = { "GET / HTTP/1.1\r\nHost: a\r\nX: 1\r\n  2\r\n\r\n", 400 },
      ["Content-Length and Transfer-Encoding"] = {
        "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400 },
      ["two different Content-Lengths"] = {
        "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400 },
      ["a Content-Length that is not a number"] = {
        "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400 },
      ["a bad chunk size"] = {
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400 },
      ["a chunk longer than its size"] = {
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n0\r\n\r\n", 400 },
      ["a path not starting with /"] = { "GET index.html HTTP/1.1\r\nHost: a\r\n\r\n", 400 },
      ["a NUL in the target"] = { "GET /style.css\0.html HTTP/1.1\r\nHost: a\r\n\r\n", 400 },
      ["an encoded CR LF in the target"] = {
        "GET /x%0d%0aSet-Cookie:%20evil=1 HTTP/1.1\r\nHost: a\r\n\r\n", 400 },
      ["an encoded control byte in the target"] = { "GET /style.css%01 HTTP/1.1\r\nHost: a\r\n\r\n", 400 },
      ["an unknown method"] = { "FROB / HTTP/1.1\r\nHost: a\r\n\r\n", 501 },
      ["a transfer coding other than chunked"] = {
        "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501 },
      ["HTTP/2.0"] = { "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505 },
      ["an unknown expectation"] = {
        "POST /echo HTTP/1.1\r\nHost: a\r\nExpect: magic\r\nContent-Length: 1\r\n\r\nx", 417 },
      ["a body over 16 MiB"] = {
        "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\n", 413 },
      ["a request line over 8 KiB"] = { "GET /" .. ("a"):rep(9000) .. " HTTP/1.1\r\n\r\n", 414 },
      ["a header line over 8 KiB"] = { "GET / HTTP/1.1\r\nHost: a\r\nX: " .. ("b"):rep(9000) .. "\r\n\r\n", 431 },
      ["101 header fields"] = { "GET / HTTP/1.1\r\n" .. ("X: y\r\n"):rep(101) .. "\r\n", 431 },
    }
    for _, name in ipairs(H.sorted_keys(BAD)) do
      it("answers " .. BAD[name][2] .. " and closes: " .. name, function()
        local raw, err = exchange(addr, BAD[name][1])
        assert.equal("closed", err)
        local rs = responses(raw)
        assert.equal(1, #rs, raw)
        assert.equal(BAD[name][2], rs[1].status)
        assert.equal("close", rs[1].headers.connection)
      end)
    end

    it("answers OPTIONS with what it allows", function()
      local raw = exchange(addr, "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n" ..
                                 "OPTIONS /index.html HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
      local rs = responses(raw)
      assert.equal(2, #rs)
      for _, r in ipairs(rs) do
        assert.equal(204, r.status)
        assert.equal("GET, HEAD, OPTIONS, POST, PUT", r.headers.allow)
        assert.is_nil(r.headers["content-length"])
      end
    end)

    it("answers a good request before a bad one, then closes", function()
      local raw, err = exchange(addr, "GET /style.css HTTP/1.1\r\nHost: a\r\n\r\nBAD\r\n\r\n" ..
                                      "GET /style.css HTTP/1.1\r\nHost: a\r\n\r\n")
      assert.equal("closed", err)
      local rs = responses(raw)
      assert.equal(2, #rs)
      assert.same({ 200, 400 }, { rs[1].status, rs[2].status })
    end)

    -- Header values made of long runs of blanks.  A pattern that trims a
    -- value with "(.-)[ \t]*$" is quadratic in such a run: 0.3 s a line of
    -- 8,100 blanks, half a minute for this request, whose 10 s deadline
    -- would then pass (408) or the read here time out.  Parsed in linear
    -- time, it is answered at once.
    it("parses header lines with long runs of blanks in linear time", function()
      local lines = {}
      for i = 1, 96 do   -- and 3 more fields: 99, httpd's most
        lines[i] = "X-Pad-" .. i .. ": a" .. (" "):rep(8100) .. "b\r\n"
      end
      local head = "POST /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n" ..
                   "Content-Length: \t " .. (" "):rep(4000) .. "3 \t" .. (" \t"):rep(2000) .. "\r\n"
      local raw, err = exchange(addr, head .. table.concat(lines) .. "\r\nabc")
      assert.equal("closed", err)
      local rs = responses(raw)
      assert.equal(1, #rs, raw)
      assert.equal(200, rs[1].status)
      assert.equal("abc", rs[1].body, "Content-Length's value, its blanks trimmed, is 3")
    end)

    it("answers the 400 even when much more was sent after it", function()
      -- The unread bytes must not turn into a reset that destroys the answer.
      local raw, err = exchange(addr, "BAD\r\n\r\n" .. ("x"):rep(200000))
      assert.equal("closed", err)
      assert.equal(400, responses(raw)[1].status)
    end)

    it("survives random bytes and broken requests", function()
      local rng = math.random
      math.randomseed(20261123)
      local valid = "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
      local inputs = {}
      for i = 1, H.scaled(300) do
        local s
        if i % 3 == 0 then   -- random bytes
          local t = {}
          for j = 1, rng(1, 600) do t[j] = string.char(rng(0, 255)) end
          s = table.concat(t)
        else                 -- a valid request with bytes changed, cut or repeated
          local t = { valid:byte(1, -1) }
          for _ = 1, rng(1, 4) do t[rng(1, #t)] = rng(0, 255) end
          s = string.char(table.unpack(t)):sub(1, rng(1, #valid + 5))
          if i % 5 == 0 then s = s:rep(rng(2, 50)) end
        end
        inputs[i] = s
      end
      local done, wg = go.chan(#inputs), go.waitgroup()
      for w = 1, 16 do
        wg:add(1)
        go(function()
          for i = w, #inputs, 16 do
            -- Each ends when the server closes: at once for a bad
            -- request, at our closewrite for one cut short.
            exchange(addr, inputs[i], true)
            done:send(i)
          end
          wg:done()
        end)
      end
      wg:wait()
      assert.equal(#inputs, #done)
      -- Still answering, and correctly.
      assert.equal(FILES["style.css"], curl("http://" .. addr .. "/style.css"))
    end)

    it("serves 500 connections at once", function()
      local n = H.scaled(500)
      local results, wg = go.chan(n), go.waitgroup()
      for _ = 1, n do
        wg:add(1)
        go(function()
          local raw = exchange(addr, "GET /sub/deep.txt HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
          local ok, rs = pcall(responses, raw)
          results:send(ok and rs[1] and rs[1].body == FILES["sub/deep.txt"])
          wg:done()
        end)
      end
      wg:wait()
      local good = 0
      for _ = 1, n do if results:recv() then good = good + 1 end end
      assert.equal(n, good)
    end)
  end)

  describe("with wrk and hey.lua", function()
    it("answers wrk without a socket error or a non-2xx", function()
      local code, out = H.command({ "wrk", "-t1", "-c8", "-d1s", "--timeout", tostring(LIMIT) .. "s",
                                    "http://" .. addr .. "/style.css" })
      assert.equal(0, code, out)
      local n = tonumber(out:match("(%d+) requests in"))
      assert.is_true(n and n > 0, out)
      assert.not_matches("Socket errors", out)
      assert.not_matches("Non%-2xx", out)
    end)
  end)
end)

describe("examples/httpd.lua options", function()
  it("closes a connection idle for -i seconds", function()
    local p, addr = httpd(pending, "-i", "0.3")
    local c = assert(go.net.dial(addr))
    c:settimeout(LIMIT)
    assert(c:write("GET /style.css HTTP/1.1\r\nHost: a\r\n\r\n"))
    local t0 = go.now()
    local got = {}
    while true do
      local s, err = c:read()
      if not s then
        assert.equal("closed", err)
        break
      end
      got[#got + 1] = s
    end
    assert.is_true(go.now() - t0 >= 0.29, "closed after " .. (go.now() - t0) .. " s")
    assert.equal(FILES["style.css"], responses(table.concat(got))[1].body)
    c:close()
    p:kill()
  end)

  it("logs each request with -v", function()
    local p, addr = httpd(pending, "-v")
    curl("http://" .. addr .. "/style.css", "http://" .. addr .. "/nope")
    local log = p:wait_for('("GET /nope" 404)')
    assert.matches('"GET /style.css" 200', p:stdout())
    assert.is_string(log)
    p:kill()
  end)

  it("exits with a message for a bad option or an address in use", function()
    local p = H.spawn(pending, { "lua5.4", "examples/httpd.lua", "-x" })
    assert.equal(2, p:wait())
    assert.matches("unknown argument %-x", p:stderr())
    assert.matches("usage:", p:stderr())
    p:kill()
    local l = assert(go.net.listen("127.0.0.1:0"))
    p = H.spawn(pending, { "lua5.4", "examples/httpd.lua", "-a", l:addr() })
    assert.equal(1, p:wait())
    assert.matches("httpd: listen " .. l:addr():gsub("%p", "%%%0") .. ": address already in use", p:stderr())
    p:kill()
    l:close()
  end)
end)

-- A server for hey.lua written here, that behaves as `respond` says:
-- respond(conn, request_text, n) for the n-th request on any connection.
-- Returns its address, its counts ({accepts=, requests=, first=}) and a
-- function that stops it.
local function test_server(respond)
  local l = assert(go.net.listen("127.0.0.1:0"))
  local counts = { accepts = 0, requests = 0 }
  local conns = {}
  -- Goroutines may be preempted between any two instructions, so the
  -- counts shared by connections are updated under a mutex.
  local mu = go.mutex()
  go(function()
    while true do
      local c = l:accept()
      if not c then return end
      counts.accepts = counts.accepts + 1   -- only this goroutine writes it
      conns[#conns + 1] = c
      go(function()
        c:settimeout(LIMIT)
        while true do
          local lines = {}
          local line = c:readline()
          if not line then break end
          local length = 0
          while line ~= "" do
            lines[#lines + 1] = line
            length = tonumber(line:match("^[Cc]ontent%-[Ll]ength: (%d+)")) or length
            line = c:readline()
            if not line then break end
          end
          if not line then break end
          local req = table.concat(lines, "\n") .. "\n\n" .. (length > 0 and c:readn(length) or "")
          mu:lock()
          counts.requests = counts.requests + 1
          counts.first = counts.first or req
          local n = counts.requests
          mu:unlock()
          if respond(c, req, n) == false then break end
        end
        c:close()
      end)
    end
  end)
  return l:addr(), counts, function()
    l:close()
    for _, c in ipairs(conns) do c:close() end
  end
end

local OK = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"

local function hey(pending, ...)
  local p = H.spawn(pending, { "lua5.4", "examples/hey.lua", "-q", ... })
  local status = p:wait(60 * H.SLOW)
  local out, err = p:stdout(), p:stderr()
  p:kill()
  return status, out, err
end

-- The numbers of hey's report.
local function report(out)
  local r = { status = {}, errors = {} }
  r.responses = tonumber(out:match("\n  Responses:\t(%d+)"))
  r.nerrors = tonumber(out:match("\n  Errors:\t(%d+)"))
  r.total = tonumber(out:match("\n  Total:\t([%d.]+) s"))
  for code, n in out:gmatch("\n  %[(%d+)%]\t(%d+) responses") do r.status[tonumber(code)] = tonumber(n) end
  for n, kind in out:gmatch("\n  %[(%d+)%]\t([^\n]+)") do
    if not kind:match("responses$") then r.errors[kind] = tonumber(n) end
  end
  r.hist = 0
  for n in out:gmatch("ms %[(%d+)%]\t|") do r.hist = r.hist + tonumber(n) end
  r.pct = {}
  for p, v in out:gmatch("\n  p([%d.]+)%s*\t([%d.]+) ms") do r.pct[#r.pct + 1] = { tonumber(p), tonumber(v) } end
  r.max = tonumber(out:match("\n  max%s*\t([%d.]+) ms"))
  return r
end

describe("examples/hey.lua", function()
  it("sends exactly -n requests to httpd.lua and reports them", function()
    local p, addr = httpd(pending, "-v")
    local status, out, err = hey(pending, "-n", "500", "-c", "10", "http://" .. addr .. "/style.css")
    local function logged()
      local n = 0
      for _ in p:stdout():gmatch('"GET /style.css" 200') do n = n + 1 end
      return n
    end
    assert.equal(0, status, err)
    local r = report(out)
    assert.equal(500, r.responses, out)
    assert.equal(0, r.nerrors)
    assert.same({ [200] = 500 }, r.status)
    assert.equal(500, r.hist, "the histogram's counts add up")
    -- Percentiles grow, and none is above the maximum.
    assert.equal(8, #r.pct)
    for i = 2, #r.pct do assert.is_true(r.pct[i][2] >= r.pct[i - 1][2], out) end
    assert.is_true(r.pct[#r.pct][2] <= r.max, out)
    -- The server logged 500 requests (each after its answer was sent).
    local until_ = go.now() + LIMIT
    while logged() < 500 and go.now() < until_ do go.sleep(0.01) end
    assert.equal(500, logged())
    p:kill()
  end)

  it("sends the method, headers and body it is given", function()
    local addr, counts, stop = test_server(function(c) c:write(OK) end)
    local status, out, err = hey(pending, "-n", "3", "-c", "1", "-m", "put", "-H", "X-Test: yes",
                                 "-d", "hello", "http://" .. addr .. "/path?q=1")
    stop()
    assert.equal(0, status, err)
    assert.equal(3, report(out).responses, out)
    assert.equal(3, counts.requests)
    assert.equal(1, counts.accepts, "keep-alive: one connection")
    local req = counts.first
    assert.matches("^PUT /path%?q=1 HTTP/1%.1\n", req)
    assert.matches("\nHost: " .. addr:gsub("%p", "%%%0") .. "\n", req)
    assert.matches("\nX%-Test: yes\n", req)
    assert.matches("\nContent%-Type: text/plain\n", req)
    assert.matches("\nContent%-Length: 5\n", req)
    assert.matches("\n\nhello$", req)
  end)

  it("lets -H replace a default field, and refuses to frame the body", function()
    local addr, counts, stop = test_server(function(c) c:write(OK) end)
    local status, out, err = hey(pending, "-n", "2", "-c", "1", "-H", "Host: example.com",
                                 "-H", "user-agent: mine", "http://" .. addr .. "/")
    stop()
    assert.equal(0, status, err)
    assert.equal(2, report(out).responses, out)
    local _, hosts = counts.first:gsub("\n[Hh]ost:", "")
    assert.equal(1, hosts, counts.first)
    assert.matches("\nHost: example%.com\n", counts.first)
    assert.not_matches("goro%-hey", counts.first)
    status, out, err = hey(pending, "-H", "Content-Length: 3", "http://" .. addr .. "/")
    assert.equal(2, status)
    assert.matches("^hey: %-H content%-length", err)
  end)

  it("sends again, once, on a kept-alive connection the server closed", function()
    -- The server closes after each answer without saying so.
    local addr, counts, stop = test_server(function(c) c:write(OK) return false end)
    local status, out, err = hey(pending, "-n", "20", "-c", "1", "http://" .. addr .. "/")
    stop()
    assert.equal(0, status, err)
    local r = report(out)
    assert.equal(20, r.responses, out)
    assert.equal(0, r.nerrors, out)
    assert.equal(20, counts.requests)
  end)

  it("opens a connection per request with -k", function()
    local addr, counts, stop = test_server(function(c) c:write(OK) end)
    local status, out, err = hey(pending, "-n", "20", "-c", "1", "-k", "http://" .. addr .. "/")
    stop()
    assert.equal(0, status, err)
    assert.equal(20, report(out).responses, out)
    assert.equal(20, counts.accepts)
    assert.matches("\nConnection: close\n", counts.first)
  end)

  local BODIES = {
    ["chunked"] = function(c)
      c:write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\nT: 1\r\n\r\n")
    end,
    ["delimited by the close"] = function(c)
      c:write("HTTP/1.1 200 OK\r\n\r\nuntil the end")
      return false
    end,
    ["HTTP/1.0 without keep-alive"] = function(c)
      c:write("HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
      return false
    end,
    ["Connection: close"] = function(c)
      c:write("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
      return false
    end,
    ["after 100 Continue"] = function(c)
      c:write("HTTP/1.1 100 Continue\r\n\r\n" .. OK)
    end,
    ["a 204 with no body"] = function(c)
      c:write("HTTP/1.1 204 No Content\r\n\r\n")
    end,
  }
  for _, name in ipairs(H.sorted_keys(BODIES)) do
    it("reads a response " .. name, function()
      local addr, counts, stop = test_server(BODIES[name])
      local status, out, err = hey(pending, "-n", "10", "-c", "2", "http://" .. addr .. "/")
      stop()
      assert.equal(0, status, err)
      local r = report(out)
      assert.equal(10, r.responses, out)
      assert.equal(0, r.nerrors, out)
      assert.equal(10, counts.requests)
    end)
  end

  -- A response whose header lines hold long runs of blanks.  hey.lua once
  -- trimmed a value with "(.-)[ \t]*$", quadratic in the run: 14 s a line
  -- of 60 KB; for these 20 lines, minutes, well past the time hey() waits
  -- and hey's own -t.  Parsed in linear time, it is one response at once.
  it("parses response header lines with long runs of blanks in linear time", function()
    local pad = {}
    for i = 1, 20 do pad[i] = "X-Pad-" .. i .. ": a" .. (" "):rep(60000) .. "b\r\n" end
    local response = "HTTP/1.1 200 OK\r\n" .. table.concat(pad) ..
                     "Content-Length:" .. (" \t"):rep(15000) .. "2" .. (" "):rep(30000) .. "\r\n\r\nok"
    local addr, counts, stop = test_server(function(c) c:write(response) end)
    local status, out, err = hey(pending, "-n", "3", "-c", "1", "-t", "5", "http://" .. addr .. "/")
    stop()
    assert.equal(0, status, err)
    local r = report(out)
    assert.equal(3, r.responses, out)
    assert.equal(0, r.nerrors, out)
    assert.equal(1, counts.accepts, "Content-Length read right: the connection was kept")
  end)

  it("counts responses by status code", function()
    local codes = { 200, 404, 503 }
    local addr, _, stop = test_server(function(c, _, n)
      local code = codes[n % 3 + 1]
      c:write("HTTP/1.1 " .. code .. " X\r\nContent-Length: 0\r\n\r\n")
    end)
    local status, out, err = hey(pending, "-n", "30", "-c", "1", "http://" .. addr .. "/")
    stop()
    assert.equal(0, status, err)
    assert.same({ [200] = 10, [404] = 10, [503] = 10 }, report(out).status)
  end)

  -- A server's fault, and the kind of error hey.lua reports for it.
  local FAULTS = {
    { "closes at once", "read: closed", function() return false end },
    { "closes in a body", "read: closed", function(c)
        c:write("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        return false
      end },
    { "answers nonsense", "bad response: status line", function(c)
        c:write("HELLO\r\n\r\n")
        return false
      end },
    { "stalls", "read: timeout", function() go.sleep(1) return false end },
    { "dribbles its head past -t", "read: timeout", function(c)
        c:write("HTTP/1.1 200 OK\r\n")
        for i = 1, 40 do   -- 2 s of header lines, 0.05 s apart
          if not c:write("X-" .. i .. ": y\r\n") then break end
          go.sleep(0.05)
        end
        return false
      end },
    { "sends a chunk size too large", "bad response: chunk size", function(c)
        c:write("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8000000000000000\r\n")
        return false
      end },
    { "sends endless header fields", "bad response: too many header fields", function(c)
        c:write("HTTP/1.1 200 OK\r\n")
        for i = 1, 300 do c:write("X-" .. i .. ": y\r\n") end
        return false
      end },
  }
  for _, case in ipairs(FAULTS) do
    it("counts errors by kind: a server that " .. case[1], function()
      local addr, _, stop = test_server(case[3])
      local status, out, err = hey(pending, "-n", "6", "-c", "2", "-t", "0.2", "http://" .. addr .. "/")
      stop()
      assert.equal(0, status, err)
      local r = report(out)
      assert.equal(0, r.responses, out)
      assert.same({ [case[2]] = 6 }, r.errors)
    end)
  end

  it("counts refused connections", function()
    local l = assert(go.net.listen("127.0.0.1:0"))
    local addr = l:addr()
    l:close()
    local status, out, err = hey(pending, "-n", "5", "-c", "5", "http://" .. addr .. "/")
    assert.equal(0, status, err)
    assert.same({ ["dial: connection refused"] = 5 }, report(out).errors)
  end)

  it("runs for -z and counts no request cut short by the end", function()
    local addr, _, stop = test_server(function(c) go.sleep(0.05) c:write(OK) end)
    local status, out, err = hey(pending, "-z", "0.6s", "-c", "4", "http://" .. addr .. "/")
    stop()
    assert.equal(0, status, err)
    local r = report(out)
    assert.equal(0, r.nerrors, out)
    assert.is_true(r.responses >= 4, out)
    assert.is_true(r.total >= 0.6 and r.total < 0.6 + H.LATE, out)
  end)

  it("prints plain progress lines when stderr is not a terminal", function()
    local addr, _, stop = test_server(function(c) go.sleep(0.01) c:write(OK) end)
    local p = H.spawn(pending, { "lua5.4", "examples/hey.lua", "-z", "1.2s", "-c", "2", "http://" .. addr .. "/" })
    assert.equal(0, p:wait(30 * H.SLOW))
    stop()
    local err = p:stderr()
    p:kill()
    assert.matches("^ +%d+ requests +[%d.]+ req/s +[%d.]+ s +%d+%%\n", err)
    assert.not_matches("\r", err)
  end)

  it("exits with status 2 and its usage for bad arguments", function()
    for _, args in ipairs({ {}, { "-c", "0", "http://x/" }, { "https://127.0.0.1/" },
                            { "-z", "soon", "http://x/" }, { "-H", "no colon", "http://x/" },
                            { "-x", "http://x/" }, { "ftp://x/" } }) do
      local status, out, err = hey(pending, table.unpack(args))
      assert.equal(2, status, table.concat(args, " ") .. "\n" .. out .. err)
      assert.matches("^hey: .*\nusage:", err)
    end
  end)
end)

describe("examples/portscan.lua", function()
  local function scan(...)
    local p = H.spawn(pending, { "lua5.4", "examples/portscan.lua", ... })
    local status = p:wait(60 * H.SLOW)
    local out, err = p:stdout(), p:stderr()
    p:kill()
    return status, out, err
  end

  -- The ports its output says are open, as a sorted list.
  local function open_ports(out)
    local ports = {}
    for p in out:gmatch("\n(%d+)/tcp +open") do ports[#ports + 1] = tonumber(p) end
    return ports
  end

  -- Listeners on 127.0.0.1 nobody accepts from: the kernel completes the
  -- handshake, which is all a connect scan needs.
  local function listeners(n)
    local ls, ports = {}, {}
    for i = 1, n do
      ls[i] = assert(go.net.listen("127.0.0.1:0"))
      ports[i] = tonumber(ls[i]:addr():match(":(%d+)$"))
    end
    table.sort(ports)
    return ls, ports
  end

  -- Every port in [lo, hi] something listens on for 127.0.0.1, from the
  -- kernel's tables.
  local function listening(lo, hi)
    local set = {}
    local any = { ["00000000"] = true, ["0100007F"] = true,
                  ["00000000000000000000000000000000"] = true,
                  ["0000000000000000FFFF00000100007F"] = true }
    for _, file in ipairs({ "/proc/net/tcp", "/proc/net/tcp6" }) do
      local f = io.open(file)
      if f then
        for line in f:lines() do
          local ip, port, st = line:match("^%s*%d+: (%x+):(%x+) %x+:%x+ (%x%x)")
          port = port and tonumber(port, 16)
          if st == "0A" and any[ip] and port >= lo and port <= hi then set[port] = true end
        end
        f:close()
      end
    end
    local list = {}
    for p in pairs(set) do list[#list + 1] = p end
    table.sort(list)
    return list
  end

  it("finds exactly the open ports of a list", function()
    local ls, open = listeners(5)
    local closed_ls, closed = listeners(5)
    for _, l in ipairs(closed_ls) do l:close() end
    local all = {}
    for _, p in ipairs(open) do all[#all + 1] = p end
    for _, p in ipairs(closed) do all[#all + 1] = p end
    local status, out, err = scan("-t", "2", "127.0.0.1", table.concat(all, ","))
    for _, l in ipairs(ls) do l:close() end
    assert.equal(0, status, err)
    assert.same(open, open_ports(out))
    assert.matches("scanned 10 ports of 127%.0%.0%.1 in [%d.]+ s: 5 open, 5 closed, 0 filtered\n$", out)
  end)

  it("finds exactly the open ports of a range", function()
    local ls, open = listeners(3)
    local lo, hi = open[1] - 20, open[#open] + 20
    if hi - lo > 3000 then lo, hi = open[1] - 20, open[1] + 20 end
    -- Other processes, and sockets of this one that __gc closes, may open
    -- or close a port of the range while the scan runs: a port listening
    -- both before and after must be found, one listening at neither time
    -- must not be.
    local before = listening(lo, hi)
    local status, out, err = scan("-c", "50", "-t", "2", "127.0.0.1", lo .. "-" .. hi)
    local after = listening(lo, hi)
    for _, l in ipairs(ls) do l:close() end
    assert.equal(0, status, err)
    local found, either = {}, {}
    for _, p in ipairs(open_ports(out)) do found[p] = true end
    for _, p in ipairs(before) do either[p] = true end
    for _, p in ipairs(after) do
      if either[p] then assert.is_true(found[p], p .. " listened throughout, not found") end
      either[p] = true
    end
    for p in pairs(found) do assert.is_true(either[p], p .. " found open, nothing listened") end
    for _, p in ipairs(open) do
      if p >= lo and p <= hi then assert.matches("\n" .. p .. "/tcp +open", out) end
    end
  end)

  it("reports a port that does not answer in time as filtered", function()
    -- A listener whose accept queue is full: the kernel drops new SYNs.
    local l = assert(go.net.listen("127.0.0.1:0", { backlog = 1 }))
    local held = {}
    for _ = 1, 8 do
      local c = go.net.dial(l:addr(), { timeout = 0.2 })
      if not c then break end
      held[#held + 1] = c
    end
    local port = l:addr():match(":(%d+)$")
    local status, out, err = scan("-a", "-t", "0.3", "127.0.0.1", port)
    for _, c in ipairs(held) do c:close() end
    l:close()
    assert.equal(0, status, err)
    assert.matches("\n" .. port .. "/tcp +filtered", out)
    assert.matches("0 open, 0 closed, 1 filtered\n$", out)
  end)

  it("reads banners with -b", function()
    local l = assert(go.net.listen("127.0.0.1:0"))
    go(function()
      while true do
        local c = l:accept()
        if not c then return end
        c:write("SSH-2.0-goro_test\r\n")
        c:close()
      end
    end)
    local port = l:addr():match(":(%d+)$")
    local status, out, err = scan("-b", "127.0.0.1", port)
    l:close()
    assert.equal(0, status, err)
    assert.matches("\n" .. port .. "/tcp +open +SSH%-2%.0%-goro_test\n", out)
  end)

  it("keeps at most -c connections open at once", function()
    local ls, ports = listeners(10)
    local open_now, most = 0, 0
    local mu = go.mutex()
    for _, l in ipairs(ls) do
      go(function()
        while true do
          local c = l:accept()
          if not c then return end
          go(function()
            mu:lock()
            open_now = open_now + 1
            most = math.max(most, open_now)
            mu:unlock()
            c:settimeout(LIMIT)
            c:read()   -- until the scanner closes: it waits for a banner
            mu:lock()
            open_now = open_now - 1
            mu:unlock()
            c:close()
          end)
        end
      end)
    end
    local t0 = go.now()
    local status, out, err = scan("-c", "3", "-b", "-t", "0.2", "127.0.0.1", table.concat(ports, ","))
    local elapsed = go.now() - t0
    for _, l in ipairs(ls) do l:close() end
    assert.equal(0, status, err)
    assert.same(ports, open_ports(out))
    assert.is_true(most <= 3, "at most 3 at once, saw " .. most)
    -- 10 ports, 3 at a time, 0.2 s each: at least 4 rounds.
    assert.is_true(elapsed >= 0.8, "took " .. elapsed .. " s")
  end)

  it("exits with status 2 and its usage for bad arguments", function()
    for _, args in ipairs({ {}, { "127.0.0.1", "0-10" }, { "127.0.0.1", "10-5" },
                            { "127.0.0.1", "1-70000" }, { "-c", "0", "127.0.0.1" },
                            { "-t", "x", "127.0.0.1" }, { "-q", "127.0.0.1" } }) do
      local status, out, err = scan(table.unpack(args))
      assert.equal(2, status, table.concat(args, " ") .. "\n" .. out .. err)
      assert.matches("^portscan: .*\nusage:", err)
    end
  end)
end)

describe("make demo (examples/demo.sh)", function()
  it("serves, loads, reports, and stops the server", function()
    local build = os.getenv("GORO_TEST_BUILD") or "build/release"
    -- Under ASan the shell's tools (mktemp, sed ...) run with its runtime
    -- preloaded, and some leak at exit: leaks are not this spec's subject.
    local asan = os.getenv("ASAN_OPTIONS")
    local env = asan and { ASAN_OPTIONS = asan:gsub("detect_leaks=1", "detect_leaks=0") } or nil
    local p = H.spawn(pending, { "sh", "examples/demo.sh", build, "1", "4" }, { env = env })
    local status = p:wait(60 * H.SLOW)
    local out = p:stdout()
    p:kill()
    assert.equal(0, status, out)
    local url = out:match("serves examples/www on (http://[%d.:]+/)")
    assert.is_string(url, out)
    local r = report(out)
    assert.is_true(r.responses > 0, out)
    assert.equal(0, r.nerrors, out)
    assert.same({ [200] = r.responses }, r.status)
    -- The server is gone.
    local c, err = go.net.dial(url:match("//([^/]+)"))
    assert.is_nil(c)
    assert.equal("connection refused", err)
  end)
end)

teardown(function()
  os.execute("rm -rf " .. WWW .. " " .. WWW .. "-secret")
end)
