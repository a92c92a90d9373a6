-- `make install` (mk/install.mk) and goro.pc, as README.md's install
-- section tells a C programmer to use them.
--
-- The release library is installed into a temporary DESTDIR; the C
-- example of README.md's "A C program, with libgoro" is taken from the
-- README itself, built with `pkg-config --cflags --libs goro` against the
-- staged files (PKG_CONFIG_SYSROOT_DIR maps goro.pc's paths into DESTDIR),
-- and run: ten goroutines say hello.  The commands run under `timeout`
-- and outside any sanitizer (the installed library is the release
-- build); the temporary directory is removed.
local H = require "spec.helper"

local function shquote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- No sanitizer runtime, no make variables from an outer make (MAKEFLAGS
-- would carry its V= into ours).
local CLEAN_ENV = "env -u LD_PRELOAD -u ASAN_OPTIONS -u UBSAN_OPTIONS -u TSAN_OPTIONS"
  .. " -u LSAN_OPTIONS -u GORO_TEST_SLOW -u MAKEFLAGS -u MFLAGS -u MAKELEVEL"
  .. " -u PKG_CONFIG_PATH -u PKG_CONFIG_LIBDIR -u PKG_CONFIG_SYSROOT_DIR"

-- Run shell command `cmd`, stderr joined to stdout: true when it exited
-- 0, its output, and how it ended.
local function run(cmd)
  local p = assert(io.popen("exec " .. CLEAN_ENV .. " /bin/sh -c " .. shquote(cmd .. " 2>&1"), "r"))
  local out = p:read("a")
  local ok, how, code = p:close()
  return ok == true, out, how .. " " .. tostring(code)
end

-- The first ```c block after the heading `heading` of README.md.
local function readme_example(heading)
  local f = assert(io.open("README.md", "r"), "README.md not found: run busted from the top of the source tree")
  local text = f:read("a")
  f:close()
  local at = text:find("\n" .. heading .. "\n", 1, true)
  assert(at, "README.md has no heading '" .. heading .. "'")
  local code = text:match("\n```c\n(.-)\n```\n", at)
  assert(code, "README.md has no ```c block after '" .. heading .. "'")
  return code .. "\n"
end

describe("make install", function()
  it("installs libgoro.a, goro.h and goro.pc, and README's C example builds and runs with them", function()
    if H.NO_CHILDREN then pending(H.NO_CHILDREN) end
    assert(run("command -v pkg-config"), "pkg-config not found: install Debian's pkg-config (sh .ci/deps does)")

    local ok, tmp = run("mktemp -d")
    assert(ok, "mktemp -d failed: " .. tmp)
    tmp = tmp:gsub("%s+$", "")
    finally(function() run("rm -rf " .. shquote(tmp)) end)
    local dest = tmp .. "/dest"
    local prefix = "/opt/goro-test"

    local out, how
    ok, out, how = run(string.format(
      "timeout -k 10 300 make --no-print-directory install V=release PREFIX=%s DESTDIR=%s",
      shquote(prefix), shquote(dest)))
    assert(ok, "make install failed (" .. how .. "):\n" .. out)
    for _, file in ipairs{ "/lib/libgoro.a", "/include/goro.h", "/lib/pkgconfig/goro.pc" } do
      local f = io.open(dest .. prefix .. file, "rb")
      assert(f, dest .. prefix .. file .. " was not installed; make said:\n" .. out)
      f:close()
    end

    -- goro.pc names the final paths, not DESTDIR's.
    local f = assert(io.open(dest .. prefix .. "/lib/pkgconfig/goro.pc", "r"))
    local pc = f:read("a")
    f:close()
    assert.matches("\nprefix=" .. prefix .. "\n", pc, 1, true)
    assert.not_matches(dest, pc, 1, true)

    local pkgconfig = string.format("PKG_CONFIG_PATH=%s PKG_CONFIG_SYSROOT_DIR=%s pkg-config",
      shquote(dest .. prefix .. "/lib/pkgconfig"), shquote(dest))
    local flags
    ok, flags = run(pkgconfig .. " --cflags --libs goro")
    assert(ok, "pkg-config --cflags --libs goro failed:\n" .. flags)
    flags = flags:gsub("%s+$", "")
    assert.matches("-lgoro -luv -pthread", flags, 1, true)

    -- The version goro.pc announces is the module's.
    local version
    ok, version = run(pkgconfig .. " --modversion goro")
    assert(ok, "pkg-config --modversion goro failed:\n" .. version)
    version = version:gsub("%s+$", "")
    assert.matches("^%d+%.%d+%.%d+$", version)
    local go = require "goro"
    if go._VERSION ~= nil then
      assert.equal("goro " .. version, go._VERSION)
    end

    f = assert(io.open(tmp .. "/hello.c", "wb"))
    f:write(readme_example("### A C program, with libgoro"))
    f:close()
    ok, out, how = run(string.format(
      "cd %s && timeout -k 10 120 cc -std=c11 -Wall -Wextra -Werror -o hello hello.c %s",
      shquote(tmp), flags))
    assert(ok, "building README's example failed (" .. how .. "):\n" .. out)

    ok, out, how = run(string.format("cd %s && GORO_MAXPROCS=2 timeout -k 5 60 ./hello", shquote(tmp)))
    assert(ok, "README's example failed (" .. how .. "):\n" .. out)
    local ids = {}
    for id in out:gmatch("hello from goroutine (%d+)\n") do
      assert.is_nil(ids[id], "goroutine " .. id .. " said hello twice:\n" .. out)
      ids[id] = true
    end
    local n = 0
    for _ in pairs(ids) do n = n + 1 end
    assert.equal(10, n, "ten goroutines should say hello:\n" .. out)
  end)
end)
