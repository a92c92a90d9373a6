# mk/aarch64.mk — the aarch64 build, tested under qemu-user.
#
#   make test-aarch64   cross-compile every C test with Debian's
#                       aarch64-linux-gnu-gcc and run it under qemu-aarch64
#
# qemu-user runs the binaries as they are on arm64 hardware, though many
# times slower: GORO_TEST_SLOW scales the workloads down.  The binaries
# find arm64 glibc and cmocka through Debian multiarch (/lib/aarch64-linux-
# gnu, installed with libcmocka-dev:arm64).  No `qemu-aarch64 -L` prefix:
# the cross toolchain's own glibc there would be mixed with multiarch's,
# and threaded programs then hang in pthread_create.

CFLAGS_aarch64 := -O2
AARCH64_CC     := aarch64-linux-gnu-gcc

.PHONY: test-aarch64

test-aarch64: deps
	$(MAKE) test-c V=aarch64 ARCH=aarch64 CC=$(AARCH64_CC) \
	  RUNNER="env GORO_TEST_SLOW=8 timeout -s KILL 900 qemu-aarch64"
