-- The LuaRocks packaging: rockspec/goro-scm-1.rockspec.
--
-- `luarocks make` installs goro into a temporary tree, from a copy of the
-- source (so that build/ is left alone); then a fresh lua5.4, whose
-- LUA_CPATH points only into that tree, requires goro and receives on the
-- main thread what a goroutine sends on a channel.  The commands run
-- under `timeout` and outside any sanitizer; the temporary tree is removed.
local H = require "spec.helper"

local ROCKSPEC = "rockspec/goro-scm-1.rockspec"

local function shquote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- The environment of every command: no sanitizer runtime (the rock is an
-- ordinary build, and LeakSanitizer would fail every program that exits
-- with memory held), no Lua search path or init code but what the command
-- sets itself.
local CLEAN_ENV = "env -u LD_PRELOAD -u ASAN_OPTIONS -u UBSAN_OPTIONS -u TSAN_OPTIONS"
  .. " -u LSAN_OPTIONS -u GORO_TEST_SLOW -u LUA_INIT -u LUA_INIT_5_4"
  .. " -u LUA_PATH -u LUA_PATH_5_4 -u LUA_CPATH -u LUA_CPATH_5_4"

-- Run shell command `cmd` in that environment, stderr joined to stdout;
-- returns true when it exited 0, its output, and how it ended ("exit 2",
-- "signal 9").  The shell io.popen starts execs env at once, so nothing
-- with a preloaded sanitizer runtime exits.
local function run(cmd)
  local p = assert(io.popen("exec " .. CLEAN_ENV .. " /bin/sh -c " .. shquote(cmd .. " 2>&1"), "r"))
  local out = p:read("a")
  local ok, how, code = p:close()
  return ok == true, out, how .. " " .. tostring(code)
end

local CHILD = [[
local go = require "goro"
local ch = go.chan()
go(function() ch:send("sent by goroutine " .. go.id()) end)
local v, ok = ch:recv()
go.wait()
print("module: " .. tostring(package.searchpath("goro", package.cpath)))
print("received: " .. tostring(v) .. " " .. tostring(ok))
]]

describe("rockspec", function()
  it("luarocks make installs goro.so, and a fresh lua5.4 runs goroutines from it", function()
    if H.NO_CHILDREN then pending(H.NO_CHILDREN) end
    local f = io.open(ROCKSPEC, "r")
    assert(f, ROCKSPEC .. " not found: run busted from the top of the source tree")
    f:close()
    assert(run("command -v luarocks"),
           "luarocks not found: install Debian's luarocks (sh .ci/deps does)")
    assert(run("command -v readelf"), "readelf not found: install Debian's binutils")

    local ok, tmp = run("mktemp -d")
    assert(ok, "mktemp -d failed: " .. tmp)
    tmp = tmp:gsub("%s+$", "")
    finally(function() run("rm -rf " .. shquote(tmp)) end)
    local src, tree = tmp .. "/src", tmp .. "/tree"

    -- The source as it is in the work tree, less build/ and .git.
    local out, how
    ok, out = run(string.format(
      "mkdir %s && tar --exclude=./build --exclude=./.git -cf - . | tar -C %s -xf -",
      shquote(src), shquote(src)))
    assert(ok, "copying the source failed:\n" .. out)

    ok, out, how = run(string.format(
      "cd %s && timeout -k 10 300 luarocks --lua-version=5.4 --tree=%s make %s",
      shquote(src), shquote(tree), ROCKSPEC))
    assert(ok, "luarocks make failed (" .. how .. "):\n" .. out)
    assert.matches("goro scm-1 is now installed", out, 1, true)
    -- What the build did is checked on the module it built, not on make's
    -- echo of its commands, which `make -s` (MAKEFLAGS=s) silences.

    local mod = tree .. "/lib/lua/5.4/goro.so"
    f = io.open(mod, "rb")
    assert(f, mod .. " was not installed; luarocks said:\n" .. out)
    f:close()

    -- STATIC_TLS: the module's TLS is accessed with the initial-exec
    -- model (-ftls-model=initial-exec); NODELETE: lua_close's dlclose
    -- never unmaps it (-Wl,-z,nodelete); NEEDED libuv (-luv).
    ok, out = run("readelf -d " .. shquote(mod))
    assert(ok, "readelf failed:\n" .. out)
    assert.matches("STATIC_TLS", out, 1, true)
    assert.matches("NODELETE", out, 1, true)
    assert.matches("Shared library: [libuv.so", out, 1, true)

    -- No TLS access of the dynamic models: those need a module-id
    -- relocation (R_X86_64_DTPMOD64, R_AARCH64_TLS_DTPMOD64) and call
    -- __tls_get_addr (__tls_get_addr or __tls_desc via TLSDESC relocations),
    -- which a signal handler must not.  Initial-exec leaves TPOFF/TPREL
    -- relocations only.
    ok, out = run("readelf -rW " .. shquote(mod))
    assert(ok, "readelf -r failed:\n" .. out)
    assert.not_matches("DTPMOD", out, 1, true)
    assert.not_matches("TLSDESC", out, 1, true)
    assert.is_truthy(out:find("TPOFF", 1, true) or out:find("TPREL", 1, true),
                     "no initial-exec TLS relocation in the module:\n" .. out)
    ok, out = run("readelf --dyn-syms -W " .. shquote(mod))
    assert(ok, "readelf --dyn-syms failed:\n" .. out)
    assert.not_matches("__tls_get_addr", out, 1, true)

    local script = tmp .. "/child.lua"
    f = assert(io.open(script, "wb"))
    f:write(CHILD)
    f:close()
    ok, out, how = run(string.format(
      "cd %s && LUA_PATH=%s LUA_CPATH=%s timeout -k 5 60 lua5.4 %s",
      shquote(tmp), shquote(tree .. "/share/lua/5.4/?.lua"),
      shquote(tree .. "/lib/lua/5.4/?.so"), shquote(script)))
    assert(ok, "lua5.4 with the installed goro failed (" .. how .. "):\n" .. out)
    assert.matches("module: " .. mod, out, 1, true)
    assert.matches("received: sent by goroutine %d+ true", out)
  end)
end)
