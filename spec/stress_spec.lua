-- Stress (DESIGN.md, "How it is checked"): many goroutines, producers and
-- consumers with random closes, select storms; with 1 and 2 Ps.  Every
-- value sent must be received exactly once, and nothing else.
-- Sizes are divided by GORO_TEST_SLOW under the sanitizers.
local go = require "goro"
local H = require "spec.helper"

local SEED = tonumber(os.getenv("GORO_TEST_SEED")) or os.time()

-- Compare what was sent (value -> where) with what was received (value ->
-- {count, where}); returns nil or a description of the first difference.
local function accounting(sent, received)
  for v, where in pairs(sent) do
    local r = received[v]
    if not r then return "value " .. v .. " sent on " .. where .. " was never received" end
    if r.count ~= 1 then return "value " .. v .. " received " .. r.count .. " times" end
    if r.where ~= where then
      return "value " .. v .. " sent on " .. where .. " received from " .. r.where
    end
  end
  for v in pairs(received) do
    if not sent[v] then return "value " .. v .. " received but never sent" end
  end
  return nil
end

-- A send that failed must have failed for the closed channel, nothing else.
local function note_unexpected(bad, err)
  if not tostring(err):find("send on closed channel", 1, true) then
    bad[#bad + 1] = tostring(err)
  end
end

-- The end of a round: no unexpected error, every value accounted for.
local function check_round(round, bad, sent, received)
  assert.same({}, bad)
  local diff = accounting(sent, received)
  assert.is_nil(diff, string.format("round %d (seed %d): %s", round, SEED, tostring(diff)))
end

local function record(received, v, where)
  local r = received[v]
  if r then r.count = r.count + 1 else received[v] = { count = 1, where = where } end
end

describe("stress", function()
  H.check_goroutines(before_each, after_each)

  for _, procs in ipairs(H.PROCS) do
    describe("with " .. procs .. " P", function()
      before_each(function()
        H.use_procs(procs)
        math.randomseed(SEED + procs)
      end)

      it("100,000 goroutines run to the end", function()
        local n = H.scaled(100000)
        local wg = go.waitgroup()
        local sum = 0
        wg:add(n)
        for i = 1, n do
          go(function() sum = sum + i; wg:done() end)
        end
        wg:wait()
        assert.equal(n * (n + 1) // 2, sum)
        go.wait()
        assert.equal(0, go.numgoroutine())
      end)

      it("100,000 goroutines blocked at once all wake", function()
        local n = H.scaled(100000)
        local gate = go.chan()
        local started, woke = go.waitgroup(), go.waitgroup()
        local count = 0
        started:add(n)
        woke:add(n)
        for _ = 1, n do
          go(function()
            started:done()
            local _, ok = gate:recv()
            if not ok then count = count + 1 end
            woke:done()
          end)
        end
        started:wait()
        assert.equal(n, go.numgoroutine())
        gate:close()
        woke:wait()
        assert.equal(n, count)
      end)

      it("a value passes through a chain of 10,000 goroutines", function()
        local n = H.scaled(10000)
        local first = go.chan()
        local prev = first
        for _ = 1, n do
          local inc, out = prev, go.chan()
          go(function() out:send(inc:recv() + 1) end)
          prev = out
        end
        first:send(0)
        assert.equal(n, (prev:recv()))
      end)

      it("producers and consumers with random closes lose no value", function()
        local rounds = H.scaled(200)
        for round = 1, rounds do
          local ch = go.chan(math.random(0, 4))
          local nprod, ncons, each = math.random(1, 6), math.random(1, 6), math.random(1, 40)
          local sent, received = {}, {}
          local bad = {}
          local wg = go.waitgroup()
          wg:add(nprod + ncons + 1)
          for p = 1, nprod do
            go(function()
              for k = 1, each do
                local v = p * 1000 + k
                local ok, err = pcall(ch.send, ch, v)
                if not ok then
                  note_unexpected(bad, err)
                  break
                end
                sent[v] = "ch"
              end
              wg:done()
            end)
          end
          for _ = 1, ncons do
            go(function()
              for v in ch:iter() do record(received, v, "ch") end
              wg:done()
            end)
          end
          -- the closer: after a random while, possibly before any send
          go(function()
            for _ = 1, math.random(0, 60) do go.yield() end
            ch:close()
            wg:done()
          end)
          wg:wait()
          check_round(round, bad, sent, received)
        end
      end)

      it("select storms with random closes lose no value", function()
        local rounds = H.scaled(30)
        for round = 1, rounds do
          local nch = math.random(1, 5)
          local chans = {}
          for c = 1, nch do chans[c] = go.chan(math.random(0, 3)) end
          local nsend, nrecv, npoll = math.random(1, 8), math.random(1, 8), math.random(0, 3)
          local each = math.random(1, 100)
          local sent, received, bad = {}, {}, {}
          local wg = go.waitgroup()
          wg:add(nsend + nrecv + npoll + 1)

          for s = 1, nsend do
            go(function()
              for k = 1, each do
                local v = s * 1000 + k
                local cases = {}
                for c = 1, nch do cases[c] = { chans[c], v } end
                local ok, i = pcall(go.select, cases)
                if not ok then
                  note_unexpected(bad, i)
                  break
                end
                sent[v] = i
              end
              wg:done()
            end)
          end

          -- receivers block in select until every channel is closed
          for _ = 1, nrecv do
            go(function()
              local cases, open = {}, nch
              for c = 1, nch do cases[c] = chans[c] end
              while open > 0 do
                local i, v, ok = go.select(cases)
                if ok then
                  record(received, v, i)
                else
                  cases[i] = false
                  open = open - 1
                end
              end
              wg:done()
            end)
          end

          -- pollers never block: select with default, a bounded number of times
          for _ = 1, npoll do
            go(function()
              local cases = { default = true }
              for c = 1, nch do cases[c] = chans[c] end
              for _ = 1, 200 do
                local i, v, ok = go.select(cases)
                if i == nil then
                  go.yield()
                elseif ok then
                  record(received, v, i)
                else
                  cases[i] = false
                end
              end
              wg:done()
            end)
          end

          -- the closer closes every channel, at random moments
          go(function()
            for c = 1, nch do
              for _ = 1, math.random(0, 40) do go.yield() end
              chans[c]:close()
            end
            wg:done()
          end)

          wg:wait()
          check_round(round, bad, sent, received)
        end
      end)

      it("a select storm over shared channels without closes", function()
        -- 8 goroutines each both send and receive through selects on 3
        -- unbuffered channels; the sums must match.
        local nch, ng, each = 3, 8, H.scaled(500)
        local chans = {}
        for c = 1, nch do chans[c] = go.chan() end
        local quit = go.chan()
        local sent_sum, recv_sum, nrecv = 0, 0, 0
        local senders = go.waitgroup()
        local receivers = go.waitgroup()
        senders:add(ng)
        receivers:add(ng)
        for g = 1, ng do
          -- a sender: each select offers its value on every channel
          go(function()
            for k = 1, each do
              local v = g * 100000 + k
              local cases = {}
              for c = 1, nch do cases[c] = { chans[c], v } end
              go.select(cases)
              sent_sum = sent_sum + v
            end
            senders:done()
          end)
          -- a receiver: selects over every channel and quit
          go(function()
            local cases = { quit }
            for c = 1, nch do cases[c + 1] = chans[c] end
            while true do
              local i, v = go.select(cases)
              if i == 1 then break end
              recv_sum = recv_sum + v
              nrecv = nrecv + 1
            end
            receivers:done()
          end)
        end
        senders:wait()
        quit:close()
        receivers:wait()
        assert.equal(ng * each, nrecv)
        assert.equal(sent_sum, recv_sum)
      end)
    end)
  end
end)
