# The Lua module: build/<V>/goro.so, the runtime and the binding in one
# shared object, loaded by a stock lua5.4 with LUA_CPATH=build/<V>/?.so.
#
#   make lua         build the module of variant $(V)
#   make test-lua    busted specs (spec/*_spec.lua) against it
#
# A sanitizer build of the module runs inside the uninstrumented lua5.4:
# the sanitizer's runtime is preloaded (LUA_PRELOAD_asan/tsan).

LUA_INC  ?= $(shell pkg-config --cflags lua5.4 2>/dev/null || echo -I/usr/include/lua5.4)
LB_SRC   := $(wildcard lua-binding/*.c)
LB_HDR   := $(wildcard lua-binding/*.h)
LB_OBJ   := $(LB_SRC:lua-binding/%.c=$(B)/lb/%.o)
LUA_MOD  := $(B)/goro.so

$(B)/lb/%.o: lua-binding/%.c $(LB_HDR) $(RT_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_V) -Icruntime $(LUA_INC) -c $< -o $@

# The runtime's objects go in whole: the module exports luaopen_goro and
# the goro_* C API (for C extensions loaded beside it).  -z nodelete: a
# module that starts threads and installs a signal handler must never be
# unmapped by lua_close's dlclose while either could still run.
$(LUA_MOD): $(LB_OBJ) $(RT_OBJ)
	$(CC) -shared -Wl,-z,nodelete -o $@ $^ $(UV_LIBS) $(LDFLAGS_V)

.PHONY: lua test-lua
lua: $(LUA_MOD)

LUA_PRELOAD_asan = LD_PRELOAD=$$($(CC) -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:verify_asan_link_order=0 UBSAN_OPTIONS=print_stacktrace=1 GORO_TEST_SLOW=4
LHOST_ENV_asan = env GORO_TEST_SLOW=4 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
LHOST_ENV_tsan = env GORO_TEST_SLOW=10 TSAN_OPTIONS=halt_on_error=1:report_signal_unsafe=0
LUA_PRELOAD_tsan = LD_PRELOAD=$$($(CC) -print-file-name=libtsan.so) TSAN_OPTIONS=halt_on_error=1:report_signal_unsafe=0 GORO_TEST_SLOW=10
BUSTED_TIMEOUT ?= 900

# `busted --lua=lua5.4` starts lua5.4 again through /bin/sh, and dash
# crashes with libtsan preloaded: under TSan the runner script is run by
# lua5.4 directly.
BUSTED         := busted --lua=lua5.4
BUSTED_tsan    := lua5.4 $(shell command -v busted)
BUSTED_V       := $(or $(BUSTED_$(V)),$(BUSTED))

test-lua: lua test-lua-hosts
	env $(LUA_PRELOAD_$(V)) LUA_CPATH="$(B)/?.so;;" GORO_TEST_BUILD=$(B) \
	  timeout -k 10 $(BUSTED_TIMEOUT) $(BUSTED_V) -o utfTerminal spec/

# C hosts of the Lua module (spec/c/lua_*.c): Lua states made by C, with
# goro from the module's objects in package.preload; run by test-lua.
LUA_LIBS   ?= $(shell pkg-config --libs lua5.4 2>/dev/null || echo -llua5.4)
LHOST_SRC  := $(wildcard spec/c/lua_*.c)
LHOST_BIN  := $(LHOST_SRC:spec/c/%.c=$(B)/%)

$(B)/lua_%: spec/c/lua_%.c $(LB_OBJ) $(RT_OBJ) $(CTEST_HDR)
	$(CC) $(CFLAGS_V) -Icruntime -Ispec/c $(LUA_INC) $< $(LB_OBJ) $(RT_OBJ) \
	  -lcmocka $(LUA_LIBS) $(UV_LIBS) -lm $(LDFLAGS_V) -o $@

.PHONY: test-lua-hosts
test-lua-hosts: $(LHOST_BIN)
	@set -e; for t in $(LHOST_BIN); do echo "== $$t"; $(LHOST_ENV_$(V)) $$t; done
