# The LuaRocks build.  rockspec/goro-scm-1.rockspec (build.type "make")
# runs, in the source tree:
#
#   make rock  CC= CFLAGS= LIBFLAG= LUA_INCDIR= UV_INCDIR= UV_LIBDIR=
#   make rock-install LIBDIR=
#
# `rock` builds build/luarocks/goro.so with this Makefile's own rules (the
# `lua` target, as variant V=luarocks), so it gets COMMON's flags, among
# them -ftls-model=initial-exec, which must not be lost (DESIGN.md,
# "Migrating native stacks safely"); LuaRocks' CFLAGS come after -O2.
# The module is linked against libuv (-luv; with Debian's --as-needed it
# is recorded as NEEDED only once the code calls libuv), not against Lua:
# lua5.4 gives the modules it loads its own API.  LIBFLAG's -shared is the
# link rule's own; any other word of it is added.  `rock-install` copies
# the module into LuaRocks' LIBDIR, from where LuaRocks installs it as the
# C module goro.  Both also work by hand (defaults: the Makefile's CC,
# pkg-config's lua5.4).

ROCK_V   := luarocks
ROCK_MOD := build/$(ROCK_V)/goro.so

.PHONY: rock rock-install
rock:
	$(MAKE) lua V=$(ROCK_V) CC="$(CC)" \
	  EXTRA_CFLAGS="-O2 $(CFLAGS)$(if $(UV_INCDIR), -I$(UV_INCDIR))" \
	  $(if $(LUA_INCDIR),LUA_INC="-I$(LUA_INCDIR)") \
	  LDFLAGS_V="$(filter-out -shared,$(LIBFLAG)) -pthread$(if $(UV_LIBDIR), -L$(UV_LIBDIR)) -luv"

rock-install:
	@test -n "$(LIBDIR)" || { echo "rock-install: LIBDIR is not set (LuaRocks sets it)" >&2; exit 1; }
	install -d "$(LIBDIR)"
	install -m 0755 $(ROCK_MOD) "$(LIBDIR)/goro.so"
