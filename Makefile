# goro — build, test and benchmark.
#
#   make test        install missing Debian packages, build, run every test
#                    (the C suites, then the busted specs of the Lua module)
#   make test-asan   both under AddressSanitizer + LeakSanitizer (+UBSan)
#   make test-tsan   both under ThreadSanitizer
#   make test-aarch64  C tests of the aarch64 build under qemu-user
#   make test-valgrind C tests under valgrind's memcheck
#   make bench       benchmarks, side by side with Go
#
# Each variant builds into build/<variant>/: libgoro.a, one binary per C
# test (spec/c/test_*.c, cmocka) and the Lua module goro.so (mk/lua.mk).

CC       ?= gcc
ARCH     ?= $(shell uname -m)
V        ?= release

CSTD     := -std=c11 -D_GNU_SOURCE
WARN     := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wno-unused-parameter
# initial-exec TLS: a goroutine migrates between threads, and the
# general-dynamic model lets the compiler cache a TLS address across the
# switch (see DESIGN.md, "Migrating native stacks safely").
COMMON   := $(CSTD) $(WARN) -fPIC -ftls-model=initial-exec -g -pthread

CFLAGS_release := -O2
CFLAGS_asan    := -O1 -fno-omit-frame-pointer -fsanitize=address,undefined,float-cast-overflow -fno-sanitize-recover=undefined,float-cast-overflow
CFLAGS_tsan    := -O1 -fno-omit-frame-pointer -fsanitize=thread
CFLAGS_debug   := -O0

B        := build/$(V)
CFLAGS_V := $(COMMON) $(CFLAGS_$(V)) $(EXTRA_CFLAGS)
LDFLAGS_V:= -pthread $(filter -fsanitize=%,$(CFLAGS_$(V)))

RT_SRC   := $(wildcard cruntime/*.c)
RT_ASM   := cruntime/ctx_$(ARCH).S
NP_SRC   := $(wildcard netpoll/*.c)
RT_OBJ   := $(RT_SRC:cruntime/%.c=$(B)/rt/%.o) $(RT_ASM:cruntime/%.S=$(B)/rt/%.o) \
            $(NP_SRC:netpoll/%.c=$(B)/np/%.o)
RT_HDR   := $(wildcard cruntime/*.h)
# The poller is libuv's loop (netpoll/).
UV_LIBS  ?= -luv
LIB      := $(B)/libgoro.a

CTEST_SRC := $(wildcard spec/c/test_*.c)
CTEST_BIN := $(CTEST_SRC:spec/c/%.c=$(B)/%)
CTEST_HDR := $(wildcard spec/c/*.h)

.PHONY: all deps lib ctest test test-c test-asan test-tsan test-valgrind clean

all: lib

deps:
	@sh .ci/deps

lib: $(LIB)

$(B)/rt/%.o: cruntime/%.c $(RT_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_V) -c $< -o $@

$(B)/rt/%.o: cruntime/%.S
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_V) -c $< -o $@

$(B)/np/%.o: netpoll/%.c $(RT_HDR)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_V) -Icruntime -c $< -o $@

$(LIB): $(RT_OBJ)
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

$(B)/test_%: spec/c/test_%.c $(LIB) $(CTEST_HDR)
	$(CC) $(CFLAGS_V) -Icruntime -Ispec/c $< $(LIB) -lcmocka $(UV_LIBS) -lm $(LDFLAGS_V) -o $@

ctest: $(CTEST_BIN)

# Run the C test binaries of variant $(V) (all, or CTEST_SKIP's left out);
# stop at the first failure.
CTEST_RUN = $(filter-out $(CTEST_SKIP:%=$(B)/%),$(CTEST_BIN))

test-c: ctest
	@set -e; for t in $(CTEST_RUN); do echo "== $$t"; $(RUNNER) $$t; done

test: deps
	$(MAKE) test-c V=release
	$(MAKE) test-lua V=release
	@echo "make test: all tests passed"

test-asan: deps
	$(MAKE) test-c V=asan RUNNER="env GORO_TEST_SLOW=4 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1"
	$(MAKE) test-lua V=asan

test-tsan: deps
	$(MAKE) test-c V=tsan RUNNER="env GORO_TEST_SLOW=10 TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1"
	$(MAKE) test-lua V=tsan

# valgrind runs threads one at a time: workloads are scaled down 50 times.
# test_ctx is left out: it switches onto stacks of its own that valgrind
# does not know (the runtime registers its stacks), and valgrind does not
# emulate the MXCSR rounding and flush-to-zero modes it checks.
test-valgrind: deps
	$(MAKE) test-c V=debug CTEST_SKIP=test_ctx RUNNER="env GORO_TEST_SLOW=50 valgrind -q --child-silent-after-fork=yes --error-exitcode=9 --leak-check=full --errors-for-leak-kinds=definite,indirect"

clean:
	rm -rf build

-include mk/*.mk
