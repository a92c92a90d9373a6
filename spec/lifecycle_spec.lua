-- The life of a Lua state's goroutines (docs/DESIGN.md): go.wait() as a
-- park usable anywhere, the end of the state ending its goroutines, and
-- goro used from finalisers that run after the state's own.
local H = require "spec.helper"
local go = require "goro"

-- Run `code` in a child lua5.4; returns status, stdout, stderr.
local function child(code)
  return H.run_child(pending, "local go = require 'goro'\n" .. code)
end

describe("go.wait()", function()
  it("returns in goroutines and the main thread once the others are done", function()
    local order, gate = {}, go.chan()
    local wg = go.waitgroup()
    wg:add(2)
    for i = 1, 2 do
      go(function()
        wg:done()
        go.wait()
        order[#order + 1] = "waiter" .. i
      end)
    end
    go(function()
      wg:wait()   -- both waiters have started
      gate:recv()
      order[#order + 1] = "worker"
    end)
    go(function() gate:send(true) end)
    go.wait()
    -- The waiters were released with the main thread; they finish after.
    assert.are.equal("worker", order[1])
    go.wait()
    table.sort(order)
    assert.are.same({ "waiter1", "waiter2", "worker" }, order)
    assert.are.equal(0, go.numgoroutine())
  end)

  it("returns at once when every other goroutine waits in it too", function()
    local done = go.chan(2)
    go(function() go.wait(); done:send(1) end)
    go(function() go.wait(); done:send(2) end)
    go.wait()
    assert.are.equal(3, done:recv() + done:recv())
  end)

  it("in a goroutine counts as blocked: waiting for a blocked goroutine is a deadlock", function()
    local status, _, err = child [[
      go(function() go.wait() end)
      go(function() go.chan():recv() end)
      go.wait()
    ]]
    assert.are.equal(2, status, err)
    assert.truthy(err:find("all goroutines are asleep - deadlock!", 1, true), err)
  end)

  it("in a goroutine does not keep the process alive when the main chunk ends", function()
    local status, out, err = child [[
      go(function() go.wait() end)
      go(function() go.wait() end)
      go(function() go.chan():recv() end)
      print("end of main")
    ]]
    assert.are.equal(0, status, err)
    assert.are.equal("end of main\n", out)
  end)
end)

describe("the end of the Lua state", function()
  it("ends goroutines parked everywhere, and the process exits", function()
    local status, out, err = child [[
      local never, mu, wg = go.chan(), go.mutex(), go.waitgroup()
      mu:lock(); wg:add(1)
      go(function() never:recv() end)
      go(function() never:send(1) end)
      go(function() go.select{never, go.after(3600)} end)
      go(function() mu:lock() end)
      go(function() wg:wait() end)
      go(function() go.sleep(0.05) end)
      go(function() local co = coroutine.wrap(function() never:recv() end); co() end)
      go(function() go.yield(); never:recv() end)
      print("end of main")
    ]]
    assert.are.equal(0, status, err)
    assert.are.equal("end of main\n", out)
  end)

  it("refuses goro calls from finalisers that run after the universe's own", function()
    -- Objects made before require "goro" are finalised after it.
    local status, out, err = H.run_child(pending, [[
      local late = setmetatable({}, { __gc = function()
        local go = package.loaded.goro
        local ch = CH
        for _, f in ipairs{
          function() return go(function() end) end,
          function() return go.yield() end,
          function() return go.wait() end,
          function() return go.gomaxprocs(3) end,
          function() return go.sleep(0.01) end,
          function() return ch:recv() end,
          -- made now, their finalisers would never run: nothing may leak
          function() return go.chan() end,
          function() return go.mutex() end,
          function() return go.after(1) end,
          function() return go.net.listen("127.0.0.1:0") end,
        } do
          local ok, e = pcall(f)
          print(ok, e)
        end
      end })
      local go = require "goro"
      CH = go.chan(1)
      go(function() go.chan():recv() end)
    ]])
    assert.are.equal(0, status, err)
    local n = 0
    for line in out:gmatch("[^\n]+") do
      n = n + 1
      -- CH itself was finalised before: that is the error for it
      assert.truthy(line:find("^false\t.*the Lua state is closing") or
                    line:find("^false\t.*channel used after it was finalised"), out)
    end
    assert.are.equal(10, n, out)
  end)
end)
