-- The coroutine library inside goroutines (README, "How goro's scheduler
-- differs").  goro wraps coroutine.*; the wrappers must give exactly Lua
-- 5.4's results and messages, on the main thread, inside a goroutine and
-- inside coroutines nested in either.  The one difference a goroutine may
-- show is that its thread is not the main one: coroutine.running() gives
-- `thread, false` there.  A goroutine's thread is, to Lua code, a
-- coroutine that is always active: "running" in its own goroutine, "normal"
-- from anywhere else, "dead" once finished.
--
-- The expected results come from a child lua5.4 that does not load goro,
-- running the same snippets.
local go = require "goro"
local H = require "spec.helper"

-- Each snippet is the body of a function; its results are compared.
local snippets = {
  resume_running = [[return coroutine.resume(coroutine.running(), 1, 2)]],
  status_running = [[return coroutine.status(coroutine.running())]],
  close_running = [[return pcall(coroutine.close, coroutine.running())]],
  yield_here = [[return pcall(coroutine.yield, 1)]],
  isyieldable_here = [[return coroutine.isyieldable(), coroutine.isyieldable(coroutine.running())]],
  resume_from_nested = [[
    local t = coroutine.running()
    local co = coroutine.create(function() return coroutine.resume(t, "x") end)
    return coroutine.resume(co)]],
  status_close_from_nested = [[
    local t = coroutine.running()
    local co = coroutine.create(function()
      return coroutine.status(t), pcall(coroutine.close, t), coroutine.isyieldable(t)
    end)
    return coroutine.resume(co)]],
  wrap_calls_itself = [[
    local w
    w = coroutine.wrap(function() return w() end)
    return pcall(w)]],
  wrap_resumes_itself = [[
    local co
    co = coroutine.create(function() return coroutine.resume(co) end)
    return coroutine.resume(co)]],
  close_self_inside = [[
    local co = coroutine.create(function() return pcall(coroutine.close, coroutine.running()) end)
    return coroutine.resume(co)]],
  nested_normal = [[
    local outer
    outer = coroutine.create(function()
      local inner = coroutine.create(function()
        return coroutine.status(outer), coroutine.resume(outer), pcall(coroutine.close, outer)
      end)
      return coroutine.resume(inner)
    end)
    return coroutine.resume(outer)]],
  lifecycle = [[
    local r = {}
    local co = coroutine.create(function(a, b)
      r[#r + 1] = coroutine.status(coroutine.running())
      local c = coroutine.yield(a + b)
      local d, e = coroutine.yield(c * 2)
      return d, e, select("#", coroutine.running()), coroutine.isyieldable()
    end)
    r[#r + 1] = coroutine.status(co)
    for _, v in ipairs({ { coroutine.resume(co, 1, 2) }, { coroutine.resume(co, 10) },
                         { coroutine.resume(co, "x", nil) }, { coroutine.resume(co) } }) do
      r[#r + 1] = table.concat({ tostring(v[1]), tostring(v[2]), tostring(v[3]),
                                 tostring(v[4]), tostring(v[5]) }, ",")
    end
    r[#r + 1] = coroutine.status(co)
    return table.unpack(r)]],
  errors = [[
    local co = coroutine.create(function() error("boom") end)
    local a, b = coroutine.resume(co)
    local c = coroutine.status(co)
    local d, e = coroutine.close(co)
    local co2 = coroutine.create(function() error({}) end)
    local f, g = coroutine.resume(co2)
    return a, b, c, d, e, f, type(g), coroutine.close(co2) == false]],
  wrap_errors = [[
    local w = coroutine.wrap(function() error("inside") end)
    local a, b = pcall(w)
    local c, d = pcall(w)
    local w2 = coroutine.wrap(function() error(setmetatable({}, { __tostring = function() return "obj" end })) end)
    local e, f = pcall(w2)
    return a, b, c, d, e, tostring(f)]],
  close_suspended = [[
    local log = {}
    local co = coroutine.create(function()
      local x <close> = setmetatable({}, { __close = function(_, err) log[#log + 1] = "closed " .. tostring(err) end })
      coroutine.yield(1)
    end)
    coroutine.resume(co)
    local a, b = coroutine.close(co)
    local co2 = coroutine.create(function()
      local x <close> = setmetatable({}, { __close = function() error("in close", 0) end })
      coroutine.yield(1)
    end)
    coroutine.resume(co2)
    local c, d = coroutine.close(co2)
    return a, b, log[1], c, d, coroutine.status(co), coroutine.status(co2)]],
  dead = [[
    local co = coroutine.create(function() return 1 end)
    coroutine.resume(co)
    return coroutine.resume(co), coroutine.status(co), coroutine.close(co)]],
  bad_arguments = [[
    return select(2, pcall(coroutine.resume, 0)), select(2, pcall(coroutine.status, {})),
           select(2, pcall(coroutine.close, nil)), select(2, pcall(coroutine.wrap, 1)),
           select(2, pcall(coroutine.isyieldable, "x"))]],
  yield_across_pcall = [[
    local co = coroutine.wrap(function()
      local ok, v = pcall(function() return coroutine.yield("in pcall") end)
      return ok, v
    end)
    return co(), co("back")]],
  main_thread_seen = [[
    local co = coroutine.create(function()
      local t = coroutine.running()
      return type(t), coroutine.status(t)
    end)
    return coroutine.resume(co)]],
}

-- Serialise the results of f() (an error too) in one string.
local serialise_src = [[
local function serialise(ok, ...)
  local out = { ok and "ok" or "error" }
  for i = 1, select("#", ...) do
    local v = select(i, ...)
    out[#out + 1] = type(v) == "thread" and "thread" or
                    type(v) == "table" and "table" or
                    type(v) == "function" and "function" or tostring(v)
  end
  return table.concat(out, " | ")
end
local function runall(snippets, context)
  local res = {}
  for name, src in pairs(snippets) do
    local f = assert(load(src, "=snippet"))
    res[name] = tostring(context(function() return serialise(pcall(f)) end))
  end
  return res
end
local contexts = {
  main = function(f) return f() end,
  nested = function(f) return coroutine.wrap(f)() end,
}
]]

local serialise_env = {}
assert(load(serialise_src .. "serialise_env.runall = runall serialise_env.contexts = contexts",
             "=serialise", "t", setmetatable({ serialise_env = serialise_env }, { __index = _G })))()

-- Plain Lua's results, from a child without goro.  Where children cannot
-- run (under TSan), the main thread's results in this process stand in, so
-- that goroutines are still compared with it.
local expected
local function plain(pending)
  if expected then return expected end
  if H.NO_CHILDREN then
    expected = { main = serialise_env.runall(snippets, serialise_env.contexts.main),
                 nested = serialise_env.runall(snippets, serialise_env.contexts.nested) }
    return expected
  end
  local lines = { serialise_src, "local snippets = {" }
  for name, src in pairs(snippets) do
    lines[#lines + 1] = string.format("  [%q] = %q,", name, src)
  end
  lines[#lines + 1] = "}"
  lines[#lines + 1] = [[
for _, ctx in ipairs({ "main", "nested" }) do
  for name, r in pairs(runall(snippets, contexts[ctx])) do
    print(ctx .. "\t" .. name .. "\t" .. (r:gsub("\n", "\\n")))
  end
end]]
  local status, out, err = H.run_child(pending, table.concat(lines, "\n"))
  assert(status == 0, H.describe_child(status, out, err))
  expected = { main = {}, nested = {} }
  for ctx, name, r in out:gmatch("(%w+)\t([%w_]+)\t([^\n]*)") do
    expected[ctx][name] = (r:gsub("\\n", "\n"))
  end
  return expected
end

local function in_goroutine(f)
  local res, done = nil, go.chan(1)
  go(function() res = f() done:send(true) end)
  assert(done:recv())
  return res
end

describe("coroutine.* gives Lua 5.4's results and messages", function()
  H.check_goroutines(before_each, after_each)

  local where = {
    { "on the main thread", "main", function(f) return f() end },
    { "in a coroutine on the main thread", "nested", function(f) return coroutine.wrap(f)() end },
    { "in a goroutine", "main", in_goroutine },
    { "in a coroutine in a goroutine", "nested",
      function(f) return in_goroutine(function() return coroutine.wrap(f)() end) end },
  }
  for _, w in ipairs(where) do
    local title, ctx, run = w[1], w[2], w[3]
    for _, name in ipairs(H.sorted_keys(snippets)) do
      it(name .. " " .. title, function()
        local want = plain(pending)[ctx][name]
        local got = serialise_env.runall({ [name] = snippets[name] }, run)[name]
        assert.are.equal(want, got)
      end)
    end
  end

  it("coroutine.running() in a goroutine: its thread, not the main one", function()
    local r = in_goroutine(function()
      local t, ismain = coroutine.running()
      local t2, ismain2 = coroutine.wrap(function() return coroutine.running() end)()
      return { type(t), ismain, type(t2), ismain2, t ~= t2 }
    end)
    assert.are.same({ "thread", false, "thread", false, true }, r)
  end)
end)

describe("another goroutine's thread", function()
  H.check_goroutines(before_each, after_each)

  -- Wait until th is parked inside the C function `fname` (goro's blocking
  -- calls yield there; the main thread holds the token, so it has left).
  local function wait_parked(th, fname)
    for _ = 1, 100000 do
      local info = debug.getinfo(th, 0, "n")
      if info and info.name == fname then return end
      go.yield()
    end
    error("the goroutine never parked in " .. fname)
  end

  it("is normal while parked and dead once finished; never resumed, closed or yieldable", function()
    local ch, out, th = go.chan(), go.chan(1), nil
    go(function()
      th = coroutine.running()
      out:send(ch:recv())
    end)
    for _ = 1, 100000 do if th then break end go.yield() end
    assert.is_not_nil(th)
    wait_parked(th, "recv")
    local ok, e = pcall(function()
      assert.are.equal("normal", coroutine.status(th))
      assert.are.same({ false, "cannot resume non-suspended coroutine" }, { coroutine.resume(th, 1) })
      assert.has_error(function() coroutine.close(th) end, "cannot close a normal coroutine")
      assert.is_false(coroutine.isyieldable(th))
      local w = coroutine.wrap(function() return coroutine.resume(th) end)
      assert.are.same({ false, "cannot resume non-suspended coroutine" }, { w() })
    end)
    ch:send("value")   -- whatever happened: let it end
    assert(ok, e)
    assert.are.equal("value", out:recv())
    go.wait()
    assert.are.equal("dead", coroutine.status(th))
    assert.are.same({ false, "cannot resume dead coroutine" }, { coroutine.resume(th) })
  end)
end)

-- The library's own functions, saved before require "goro", know nothing
-- of goroutines: whatever they do to a goroutine's thread must not run its
-- code elsewhere or crash (issue: resuming a parked goroutine's thread
-- through them segfaulted).
describe("the library's functions saved before require", function()
  it("cannot run a goroutine's code: parked, preempted, or about to start", function()
    local status, out, err = H.run_child(pending, [[
      local resume, running, yield = coroutine.resume, coroutine.running, coroutine.yield
      local go = require "goro"
      local ch, got = go.chan(), go.chan(10)
      local th
      go(function() th = running(); got:send(ch:recv()) end)
      for _ = 1, 100000 do
        local info = th and debug.getinfo(th, 0, "n")
        if info and info.name == "recv" then break end
        go.yield()
      end
      assert(debug.getinfo(th, 0, "n").name == "recv", "never parked")
      print("parked", resume(th, 1, 2))
      print("parked", resume(th))
      print("wrapped", coroutine.status(th), select(2, pcall(coroutine.close, th)), coroutine.resume(th))
      ch:send("v")
      print("received", got:recv())

      -- a goroutine preempted in a loop: the main thread runs only once
      -- it has been interrupted
      local th2, stop
      go(function() th2 = running(); local n = 0 while not stop do n = n + 1 end got:send(n > 0) end)
      while not th2 do go.yield() end
      go.yield()
      print("busy", resume(th2))
      stop = true
      print("busy ended", got:recv())

      -- a finished goroutine's thread is reused by the next go()
      local done = go.chan()
      go(function() done:send(running()) end)
      local old = done:recv()
      go.wait()
      go(function(a, b) got:send(a .. b) end, "x", "y")
      print("fresh", coroutine.status(old), coroutine.resume(old))
      print("reused", resume(old, "z"), resume(old))
      print("guarded", coroutine.status(old), pcall(coroutine.close, old))
      print("reused ran", got:recv())

      -- the library's yield in a goroutine's own thread
      go(function() got:send(select("#", yield(1))) end)
      print("yield", got:recv())
      go.wait()
      print("end")
    ]])
    assert.are.equal(0, status, H.describe_child(status, out, err))
    assert.are.equal(table.concat({
      "parked\ttrue", "parked\ttrue",
      "wrapped\tnormal\tcannot close a normal coroutine\tfalse\tcannot resume non-suspended coroutine",
      "received\tv\ttrue",
      "busy\tfalse\tcannot resume non-suspended coroutine", "busy ended\ttrue\ttrue",
      "fresh\tnormal\tfalse\tcannot resume non-suspended coroutine",
      "reused\ttrue\ttrue",
      "guarded\tnormal\tfalse\tcannot close a normal coroutine",
      "reused ran\txy\ttrue", "yield\t0\ttrue", "end", "" }, "\n"), out)
  end)
end)

-- A goroutine's native stack is deep enough for Lua's own C-call limit
-- (README, "stacks"): Lua raises its error before the guard page.
describe("deep C recursion in a goroutine", function()
  local cases = {
    gsub = [[local function f() return (string.gsub("x", "x", f)) end return f()]],
    format_tostring = [[
      local mt = {}
      mt.__tostring = function(t) return string.format("%s", t) end
      return tostring(setmetatable({}, mt))]],
    gsub_format = [[
      local mt = {}
      mt.__tostring = function(t)
        return (string.gsub("x", "x", function() return string.format("%s %d", t, 1) end))
      end
      return tostring(setmetatable({}, mt))]],
    sort = [[local function f() table.sort({ 3, 2, 1 }, function(a, b) f() return a < b end) end f()]],
    load_reader = [[local function f() return load(function() f() return nil end) end return f()]],
    nested_resume = [[
      local function f()
        local ok, e = coroutine.resume(coroutine.create(f))
        if not ok then error(e, 0) end
      end
      f()]],
    message_handler = [[
      local function h(m) return select(2, xpcall(error, h, m)) end
      return xpcall(error, h, "x")]],
    index_chain = [[
      local t = setmetatable({}, {})
      getmetatable(t).__index = function(_, k) return t[k] end
      return t.x]],
  }
  for _, name in ipairs(H.sorted_keys(cases)) do
    it(name .. " raises Lua's error", function()
      local status, out, err = H.run_child(pending, [[
        local go = require "goro"
        local f = assert(load(]] .. string.format("%q", cases[name]) .. [[))
        go(function() print(pcall(f)) end)
        go.wait()
        print("survived")
      ]])
      assert.are.equal(0, status, H.describe_child(status, out, err))
      assert.matches("survived", out)
      assert.does_not.match("stack overflow\n", err)
    end)
  end
end)
