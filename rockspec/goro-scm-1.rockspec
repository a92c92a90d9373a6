-- luarocks --lua-version=5.4 make      (at the top of the tree; it finds
--                                      this file in rockspec/ by itself)
--
-- Builds goro.so with the project's Makefile (mk/rock.mk: `make rock`,
-- then `make rock-install`) and installs it as the C module goro.
--
-- Version "scm-1": this rockspec builds the source tree it sits in, at
-- whatever commit that is; the tree's release is goro 0.1.0 (go._VERSION,
-- CHANGELOG.md).  A rockspec for a published release would be named
-- goro-0.1.0-1.rockspec and point source.url at a tagged archive; there
-- is none, as goro is not published anywhere.
package = "goro"
version = "scm-1"

-- `luarocks make` builds the current directory and never fetches
-- source.url.  The url says where the source is, the local git work tree
-- (relative to the top of the tree, where luarocks make runs); `luarocks
-- build` and `luarocks pack`, which would fetch it into a directory of
-- their own, are not supported.
source = {
   url = "git+file://.",
}

description = {
   summary = "Go's goroutine scheduler, in C, for Lua 5.4",
   detailed = [[
goro is Go's GMP runtime (goroutines multiplexed onto OS threads holding
one of GOMAXPROCS processors) as a C library, and a Lua 5.4 module on top
of it: `local go = require "goro"` gives goroutines spread over OS
threads, channels, select, wait groups and mutexes; timers and
non-blocking TCP, UDP and DNS on a libuv poller.  This is goro 0.1.0.
]],
   -- No homepage: goro has no public site or repository; README.md and
   -- docs/API.md in the source tree are its documentation.
   license = "MIT",
   maintainer = "the goro authors",
}

-- Linux only: futexes, and a context switch in assembly for x86_64 and
-- aarch64 (cruntime/ctx_<arch>.S).
supported_platforms = { "linux" }

dependencies = {
   "lua >= 5.4, < 5.5",
}

-- libuv: the poller (timers, sockets, DNS) is a libuv loop; Debian's
-- libuv1-dev.  LuaRocks finds uv.h and libuv and passes their directories
-- as UV_INCDIR and UV_LIBDIR.
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
