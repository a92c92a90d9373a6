-- luarocks --lua-version=5.4 make rockspec/goro-scm-1.rockspec   (at the top of the tree)
--
-- Builds goro.so with the project's Makefile (mk/rock.mk: `make rock`,
-- then `make rock-install`) and installs it as the C module goro.
package = "goro"
version = "scm-1"

source = {
   url = "git+https://example.invalid/goro.git",
}

description = {
   summary = "Go's goroutine scheduler, in C, for Lua 5.4",
   detailed = [[
goro is Go's GMP runtime (goroutines multiplexed onto OS threads holding
one of GOMAXPROCS processors) as a C library, and a Lua 5.4 module on top
of it: `local go = require "goro"` gives goroutines spread over OS
threads, channels, select, wait groups and mutexes.
]],
}

-- Linux only: futexes, and a context switch in assembly for x86_64 and
-- aarch64 (cruntime/ctx_<arch>.S).
supported_platforms = { "linux" }

dependencies = {
   "lua >= 5.4, < 5.5",
}

-- libuv: for the poller (timers, sockets, DNS); linked from now on, so
-- that this rockspec stays the same when the poller lands.
external_dependencies = {
   UV = {
      header = "uv.h",
      library = "uv",
   },
}

-- LUA_LIBDIR is not passed: LuaRocks fills it in only on platforms where
-- modules link Lua explicitly, so on Linux "$(LUA_LIBDIR)" is left
-- unmatched (a warning); and goro.so must not link liblua anyway: lua5.4
-- gives the modules it loads its own API.
build = {
   type = "make",
   build_target = "rock",
   build_variables = {
      CC = "$(CC)",
      CFLAGS = "$(CFLAGS)",
      LIBFLAG = "$(LIBFLAG)",
      LUA_INCDIR = "$(LUA_INCDIR)",
      UV_INCDIR = "$(UV_INCDIR)",
      UV_LIBDIR = "$(UV_LIBDIR)",
   },
   install_target = "rock-install",
   install_variables = {
      LIBDIR = "$(LIBDIR)",
   },
}
