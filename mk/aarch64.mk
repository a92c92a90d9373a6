# mk/aarch64.mk — the aarch64 build: cross-compiled, tests run by qemu-user.
#
#   make test-aarch64   build variant "aarch64" into build/aarch64 with
#                       aarch64-linux-gnu-gcc, run every C test under qemu
#
# qemu gets -L /, so the guest uses the arm64 multiarch libraries
# (libc6:arm64, which libcmocka-dev:arm64 pulls in) for everything.  With
# -L /usr/aarch64-linux-gnu, ld.so would come from libc6-arm64-cross while
# libc.so.6 still comes from libc6:arm64 (the host's ld.so.cache lists it);
# those two are private ABI partners, and when the packages' versions differ
# (here 2.36-8cross1 and 2.36-9+deb12u14) the first pthread_create or fork
# of the guest spins forever in glibc's stack cache.

CFLAGS_aarch64 := -O2

AARCH64_CC     ?= aarch64-linux-gnu-gcc
AARCH64_RUNNER ?= qemu-aarch64 -L /

.PHONY: test-aarch64

# GORO_TEST_SLOW: qemu is slower; tests scale workloads and watchdogs by it.
test-aarch64: deps
	GORO_TEST_SLOW=4 $(MAKE) test-c V=aarch64 ARCH=aarch64 \
	  CC=$(AARCH64_CC) RUNNER="$(AARCH64_RUNNER)"
