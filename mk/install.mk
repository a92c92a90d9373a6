# mk/install.mk — `make install`: the C library for C programs.
#
#   make install [PREFIX=/usr/local] [DESTDIR=] [V=release]
#   make uninstall [PREFIX=/usr/local] [DESTDIR=]
#
# Installs build/$(V)/libgoro.a (built first if needed), the public
# header cruntime/goro.h, and a pkg-config file goro.pc made from
# mk/goro.pc.in, so that a C program builds with
#
#   cc hello.c $(pkg-config --cflags --libs goro)
#
# libgoro.a holds the runtime and the poller; the poller is libuv's loop,
# so a program links -luv too (goro.pc says so), and -pthread.  Only the
# static library is installed: goro's threads and its initial-exec TLS
# (DESIGN.md, "Migrating native stacks safely") belong in the program
# itself.  The Lua module is LuaRocks' business (mk/rock.mk).
#
# DESTDIR is prepended to every path written, never to the paths goro.pc
# names, as packagers expect.  The directories below follow the GNU names
# in lower case: LIBDIR is LuaRocks' variable in mk/rock.mk.

GORO_VERSION ?= 0.1.0

PREFIX       ?= /usr/local
libdir       ?= $(PREFIX)/lib
includedir   ?= $(PREFIX)/include
pkgconfigdir ?= $(libdir)/pkgconfig
INSTALL      ?= install

GORO_PC := $(B)/goro.pc

.PHONY: install uninstall

$(GORO_PC): mk/goro.pc.in mk/install.mk FORCE
	@mkdir -p $(dir $@)
	sed -e 's|@prefix@|$(PREFIX)|g' -e 's|@libdir@|$(libdir)|g' \
	    -e 's|@includedir@|$(includedir)|g' -e 's|@version@|$(GORO_VERSION)|g' \
	    mk/goro.pc.in > $@

.PHONY: FORCE
FORCE:

install: $(LIB) $(GORO_PC)
	$(INSTALL) -d "$(DESTDIR)$(libdir)" "$(DESTDIR)$(includedir)" "$(DESTDIR)$(pkgconfigdir)"
	$(INSTALL) -m 0644 $(LIB) "$(DESTDIR)$(libdir)/libgoro.a"
	$(INSTALL) -m 0644 cruntime/goro.h "$(DESTDIR)$(includedir)/goro.h"
	$(INSTALL) -m 0644 $(GORO_PC) "$(DESTDIR)$(pkgconfigdir)/goro.pc"

uninstall:
	rm -f "$(DESTDIR)$(libdir)/libgoro.a" "$(DESTDIR)$(includedir)/goro.h" \
	      "$(DESTDIR)$(pkgconfigdir)/goro.pc"
