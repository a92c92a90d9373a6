-- The goroutine dump (issue 12, item 4) and the states tests wait for:
-- go.status(id) names what a goroutine does in Go's words, go.stacks()
-- prints Go's dump, and the deadlock message is followed by it.
local go = require "goro"
local H = require "spec.helper"

describe("go.status", function()
  H.check_goroutines(before_each, after_each)

  it("names each kind of wait in Go's words", function()
    local inbox, outbox, never = go.chan(), go.chan(), go.chan()
    local mu, wg = go.mutex(), go.waitgroup()
    mu:lock()
    wg:add(1)
    local l = assert(go.net.listen("127.0.0.1:0"))
    local ids = {
      ["chan receive"] = go(function() inbox:recv() end),
      ["chan send"] = go(function() outbox:send(1) end),
      ["semacquire"] = go(function() mu:lock(); mu:unlock() end),
      ["select"] = go(function() go.select{ never, go.chan() } end),
      ["sleep"] = go(function() go.sleep(0.5) end),
      ["IO wait"] = go(function() l:accept() end),
    }
    local waiter = go(function() wg:wait() end)
    for state, id in pairs(ids) do H.wait_state(id, state) end
    H.wait_state(waiter, "semacquire")
    local state, waited = go.status(ids["sleep"])
    assert.equal("sleep", state)
    assert.is_true(waited >= 0)
    local counts = go.status()
    assert.is_true(counts["semacquire"] >= 2)
    assert.equal(1, counts["sleep"])
    -- Let them all go.
    assert.equal(1, (outbox:recv()))
    inbox:send(2)
    mu:unlock()
    wg:done()
    never:close()
    l:close()
  end)

  it("says running for the caller, and nil once a goroutine has ended", function()
    local id = go(function() end)
    go.wait()
    assert.is_nil(go.status(id))
    assert.is_nil(go.status(id + 1000))
    assert.equal("running", go.status(0))   -- the main thread, asking
    local got = go.chan(1)
    go(function() got:send(go.status(go.id())) end)
    assert.equal("running", got:recv())
  end)

  it("reports the main thread's wait to a goroutine", function()
    local ch, seen = go.chan(), go.chan(1)
    go(function()
      H.wait_state(0, "chan receive")
      seen:send(go.status(0))
      ch:send("done")
    end)
    assert.equal("done", ch:recv())
    assert.equal("chan receive", seen:recv())
  end)

  it("raises for an id that is not an integer", function()
    assert.has_error(function() go.status("x") end)
    assert.has_error(function() go.status(1.5) end)
    assert.has_error(function() go.status({}) end)
  end)
end)

describe("go.stacks", function()
  H.check_goroutines(before_each, after_each)

  it("prints every goroutine with its state and where it waits", function()
    local ch = go.chan()
    local function parked_here() ch:recv() end
    local id = go(function() parked_here() end)
    H.wait_state(id, "chan receive")
    local dump = go.stacks()
    assert.matches("^goroutine 0 %[running%]:\n", dump)
    assert.matches("\ngoroutine " .. id .. " %[chan receive%]:\n", dump)
    assert.matches("in upvalue 'parked_here'", dump, 1, true)
    assert.matches("dump_spec.lua:%d+:", dump)
    ch:send(1)
  end)

  it("from a goroutine: itself first, then the main thread", function()
    local out = go.chan(1)
    local id = go(function() H.wait_state(0, "chan receive"); out:send(go.stacks()) end)
    local dump = out:recv()
    assert.matches("^goroutine " .. id .. " %[running%]:\n", dump)
    assert.matches("\ngoroutine 0 %[chan receive%]:\n", dump)
  end)
end)

describe("the deadlock message", function()
  it("is followed by the goroutine dump, as Go's", function()
    local status, out, err = H.run_child(pending, [[
      local go = require "goro"
      local ch, mu = go.chan(), go.mutex()
      mu:lock()
      local function stuck_sender() ch:send(1) end
      local sender = go(function() stuck_sender() end)
      local locker = go(function() mu:lock() end)
      while go.status(sender) ~= "chan send" or go.status(locker) ~= "semacquire" do
        go.yield()
      end
      go.select{}
    ]])
    assert.equal(2, status, H.describe_child(status, out, err))
    assert.matches("^fatal error: all goroutines are asleep %- deadlock!\n\ngoroutine 0 %[select %(no cases%)%]:\n", err)
    assert.matches("\ngoroutine 1 %[chan send%]:\n", err)
    assert.matches("in upvalue 'stuck_sender'", err, 1, true)
    assert.matches("\ngoroutine 2 %[semacquire%]:\n", err)
  end)
end)
