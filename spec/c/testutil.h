/*
** testutil.h — what every C test of goro shares (cmocka).
**
** Every test runs under a watchdog: if it has not finished within its bound
** the process prints which test hung and exits with status 124, so a hang
** fails CI fast instead of stalling it.  Sanitizer and qemu builds run
** slower: GORO_TEST_SLOW=N multiplies every bound by N.
*/
#ifndef GORO_TESTUTIL_H
#define GORO_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <time.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "goro.h"

static const char *watchdog_name = "?";

static void watchdog_fired(int sig) {
  static const char msg[] = "watchdog: test did not finish in time: ";
  (void)sig;
  (void)!write(2, msg, sizeof msg - 1);
  (void)!write(2, watchdog_name, strlen(watchdog_name));
  (void)!write(2, "\n", 1);
  _exit(124);
}

static inline int test_slowdown(void) {
  const char *s = getenv("GORO_TEST_SLOW");
  int n = s ? atoi(s) : 1;
  return n > 0 ? n : 1;
}

/* Arm the watchdog for `seconds` (scaled by GORO_TEST_SLOW). */
static inline void watchdog(const char *name, unsigned seconds) {
  watchdog_name = name;
  signal(SIGALRM, watchdog_fired);
  alarm(seconds * (unsigned)test_slowdown());
}

static inline void watchdog_off(void) { alarm(0); }

/* valgrind serialises threads: parallelism cannot be observed there. */
#if defined(__has_include)
# if __has_include(<valgrind/valgrind.h>)
#  include <valgrind/valgrind.h>
# endif
#endif
static inline bool under_valgrind(void) {
#ifdef RUNNING_ON_VALGRIND
  return RUNNING_ON_VALGRIND;
#else
  return false;
#endif
}

static inline int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* Scale a workload down for slow builds: n / GORO_TEST_SLOW, at least 1. */
static inline long scaled(long n) {
  long r = n / test_slowdown();
  return r > 0 ? r : 1;
}

/* GORO_TEST_FILTER=pattern runs only the matching tests (cmocka's
** wildcards), e.g. GORO_TEST_FILTER='*storm*'. */
#define goro_run_tests(tests) \
  (getenv("GORO_TEST_FILTER") ? cmocka_set_test_filter(getenv("GORO_TEST_FILTER")) : (void)0, \
   cmocka_run_group_tests(tests, NULL, NULL))

/* cmocka fixtures: a runtime with 1 or 2 Ps around each test. */
static inline int setup1(void **state) { (void)state; return goro_init(1); }
static inline int setup2(void **state) { (void)state; return goro_init(2); }
static inline int teardown(void **state) { (void)state; goro_shutdown(); return 0; }

#define ON(nprocs, fn) \
  cmocka_unit_test_setup_teardown(fn, setup##nprocs, teardown)

/* Parent side of a test run in a forked child whose stderr goes to the
** pipe `fd`: read that stderr into buf (NUL-terminated) until the child
** closes it, reap the child, return its wait status. */
static inline int child_finish(pid_t pid, int fd, char *buf, size_t size) {
  size_t len = 0;
  ssize_t n;
  while (len < size - 1 && (n = read(fd, buf + len, size - 1 - len)) > 0)
    len += (size_t)n;
  buf[len] = '\0';
  close(fd);
  int status = 0;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  return status;
}

/* Wait for every goroutine, failing the test if that takes > `seconds`. */
static inline void wait_all(unsigned seconds) {
  int rc = goro_wait((int64_t)seconds * test_slowdown() * 1000000000LL);
  assert_int_equal(rc, GORO_OK);
}

#endif
