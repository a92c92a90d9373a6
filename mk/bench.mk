# mk/bench.mk — `make bench`: goro's benchmark suite, side by side with Go.
#
#   make bench                          every workload, 5 runs each, two tables
#   make bench BENCH_ARGS="W1 W2/1P"    some workloads (row ids or W2 for both)
#   make bench BENCH_ARGS="W8 W9"       W6, W8, W9 go to bench/net.sh, the rest to run.sh
#   make bench-net                      only the timer and network table (W6 W8 W9)
#   BENCH_RUNS=3 make bench             fewer runs (see bench/run.sh for more)
#
# Builds libgoro.a (V=release), build/release/bench_goro, build/bench_go
# and the Lua module build/release/goro.so (`make lua`, mk/lua.mk), then runs
# bench/run.sh (the scheduler and channel table), then bench/net.sh (timers
# and network: goro's Lua module beside Go, lua-luv and lua-cqueues, with
# bench_go's servers and W8 load client and wrk).  A missing piece skips its column rather than stopping the
# table: no `go` → no Go column; a library that does not build → no goro
# column; a module that does not build → no goro-lua column (the lua-coro
# column, plain Lua, needs only lua5.4).  While libgoro.a has no channels (goro_chan_new,
# goro_select), bench_goro is built with -DBENCH_NO_CHAN: W1 and W5 only.

BENCH_GORO  := build/release/bench_goro
BENCH_GOBIN := build/bench_go
BENCH_ARGS  ?=
# Go writes nothing outside build/, and never asks the network.
BENCH_GOENV := GOCACHE=$(CURDIR)/build/gocache GOPATH=$(CURDIR)/build/gopath \
               GOMODCACHE=$(CURDIR)/build/gopath/pkg/mod GOFLAGS= GO111MODULE=on \
               GOPROXY=off GOTOOLCHAIN=local GOTELEMETRY=off

.PHONY: bench bench-goro bench-go bench-lua bench-net bench-hey

# Rows of bench/net.sh; every other BENCH_ARGS word goes to bench/run.sh.
BENCH_NET_ROWS := W6 W6/late W8 W9
BENCH_CORE_ARGS := $(filter-out $(BENCH_NET_ROWS),$(BENCH_ARGS))
BENCH_NET_ARGS  := $(filter $(BENCH_NET_ROWS),$(BENCH_ARGS))

bench:
	@if $(MAKE) --no-print-directory lib V=release; then \
	  $(MAKE) --no-print-directory bench-goro V=release || { \
	    echo "bench: bench_goro does not build; the goro column is skipped"; \
	    rm -f $(BENCH_GORO); }; \
	else \
	  echo "bench: libgoro.a does not build; the goro column is skipped"; \
	  rm -f $(BENCH_GORO); \
	fi
	@$(MAKE) --no-print-directory bench-go
	@$(MAKE) --no-print-directory bench-lua
	@$(if $(BENCH_ARGS),$(if $(BENCH_CORE_ARGS),bash bench/run.sh $(BENCH_CORE_ARGS),:),bash bench/run.sh)
	@$(if $(BENCH_ARGS),$(if $(BENCH_NET_ARGS),echo && bash bench/net.sh $(BENCH_NET_ARGS),:),echo && bash bench/net.sh)

bench-net:
	@$(MAKE) --no-print-directory bench-go
	@$(MAKE) --no-print-directory bench-lua
	@bash bench/net.sh $(BENCH_NET_ARGS)

# hey.lua against wrk on the same servers (bench/hey.sh).
bench-hey:
	@$(MAKE) --no-print-directory lua V=release
	@$(MAKE) --no-print-directory bench-go
	@bash bench/hey.sh

bench-goro: $(BENCH_GORO)

# Channels are detected in the library itself, so that bench_goro is rebuilt
# with every workload once they land (libgoro.a is a prerequisite).
$(BENCH_GORO): bench/c/bench.c cruntime/goro.h build/release/libgoro.a
	@mkdir -p $(dir $@)
	@syms=$$(nm -g --defined-only build/release/libgoro.a 2>/dev/null); \
	nochan=; \
	for s in goro_chan_new goro_chan_send goro_chan_recv goro_chan_close goro_select; do \
	  printf '%s\n' "$$syms" | grep -q " T $$s$$" || nochan=-DBENCH_NO_CHAN; \
	done; \
	[ -z "$$nochan" ] || echo "bench: libgoro.a has no channels yet: bench_goro runs W1 and W5 only"; \
	echo "$(CC) $(COMMON) $(CFLAGS_release) $$nochan -Icruntime $< build/release/libgoro.a $(UV_LIBS) -pthread -o $@"; \
	$(CC) $(COMMON) $(CFLAGS_release) $$nochan -Icruntime $< build/release/libgoro.a $(UV_LIBS) -pthread -o $@

bench-go:
	@if command -v go >/dev/null 2>&1; then \
	  mkdir -p build && \
	  echo "cd bench/go && go build -o $(CURDIR)/$(BENCH_GOBIN) ." && \
	  (cd bench/go && $(BENCH_GOENV) go build -o $(CURDIR)/$(BENCH_GOBIN) .) || { \
	    echo "bench: bench_go does not build; the Go column is skipped"; \
	    rm -f $(BENCH_GOBIN); }; \
	else \
	  echo "bench: no \`go\` on PATH; the Go column is skipped"; \
	  rm -f $(BENCH_GOBIN); \
	fi

# The module of the goro-lua column, if this tree has the `lua` target.
bench-lua:
	@if $(MAKE) --no-print-directory -n lua V=release >/dev/null 2>&1; then \
	  $(MAKE) --no-print-directory lua V=release || { \
	    echo "bench: goro.so does not build; the goro-lua column is skipped"; \
	    rm -f build/release/goro.so; }; \
	else \
	  echo "bench: no \`make lua\` target; the goro-lua column is skipped"; \
	  rm -f build/release/goro.so; \
	fi
