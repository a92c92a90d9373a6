# make demo: goro's main job on show.  examples/httpd.lua serves
# examples/www on a free port of 127.0.0.1, examples/hey.lua loads it for
# DEMO_SECONDS with DEMO_CONNS connections and prints its report, and the
# server is stopped (examples/demo.sh).
#
#   make demo [DEMO_SECONDS=3] [DEMO_CONNS=50]

DEMO_SECONDS ?= 3
DEMO_CONNS   ?= 50

.PHONY: demo
demo: deps
	$(MAKE) --no-print-directory lua V=release
	sh examples/demo.sh build/release $(DEMO_SECONDS) $(DEMO_CONNS)
