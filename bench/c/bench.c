/*
** bench.c — goro's side of the benchmark suite (bench/run.sh).
**
** One binary, one workload per run:
**
**   bench_goro -w W1 -n 1000000 -procs 2
**
** prints exactly one line on stdout, "RESULT <workload> <value> <unit>".
** Each workload mirrors bench/go/main.go: the same shape and the same N, with
** C tasks in place of goroutines and goro_chan/goro_select in place of Go's
** channels.  Where Go's main goroutine spawns and waits (sync.WaitGroup),
** the program's main thread (a foreign thread to goro) spawns and waits with
** goro_wait(-1); W1 and W5 spawn their N tasks from one task, as Go's main
** goroutine does.  A failed self-check prints a message on stderr and exits
** with status 1.
**
** Built with -DBENCH_NO_CHAN (mk/bench.mk does so while libgoro.a has no
** channels yet) only W1 and W5, which need just the scheduler, are compiled.
*/
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "goro.h"

static const char *progname = "bench_goro";

__attribute__((format(printf, 1, 2), noreturn))
static void fail(const char *fmt, ...) {
  va_list ap;
  fprintf(stderr, "%s: ", progname);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  fflush(stderr);
  _exit(1);
}

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static double per_op(int64_t start, int64_t n) {
  return (double)(now_ns() - start) / (double)n;
}

static void spawn_or_fail(goro_fn fn, void *arg) {
  int64_t id = goro_spawn(fn, arg);
  if (id < 0)
    fail("goro_spawn: %s", goro_strerror((int)id));
}

static void wait_all(void) {
  int rc = goro_wait(-1);
  if (rc != GORO_OK)
    fail("goro_wait: %s", goro_strerror(rc));
}

/* A failure inside a task: report it from there; the process ends. */
static _Atomic int64_t spawn_failed;   /* the GORO_E* code, 0 if none */


/*
** {======================================================
** W1: spawn n tasks from one task, wait for all to finish
** =======================================================
*/

static struct {
  int64_t n;
  _Atomic int64_t done;
} w1s;

static void w1_task(void *arg) {
  (void)arg;
  atomic_fetch_add_explicit(&w1s.done, 1, memory_order_relaxed);
}

static void w1_spawner(void *arg) {
  (void)arg;
  for (int64_t i = 0; i < w1s.n; i++) {
    int64_t id = goro_spawn(w1_task, NULL);
    if (id < 0) {
      atomic_store(&spawn_failed, id);
      return;
    }
  }
}

static double w1(int64_t n, const char **unit) {
  w1s.n = n;
  int64_t start = now_ns();
  spawn_or_fail(w1_spawner, NULL);
  wait_all();
  double r = per_op(start, n);
  if (atomic_load(&spawn_failed))
    fail("W1: goro_spawn: %s", goro_strerror((int)atomic_load(&spawn_failed)));
  if (atomic_load(&w1s.done) != n)
    fail("W1: %lld of %lld finished", (long long)atomic_load(&w1s.done),
         (long long)n);
  *unit = "ns/task";
  return r;
}

/* }====================================================== */


/*
** {======================================================
** W5: n parked tasks, bytes of RSS each
** =======================================================
*/

static struct {
  int64_t n;
  goro_g **slots;             /* slot i: task i, once parked */
  _Atomic int64_t parked;
  _Atomic int64_t woke;
} w5s;

static int64_t vmrss(void) {
  FILE *f = fopen("/proc/self/status", "r");
  if (f == NULL)
    fail("W5: /proc/self/status: %s", strerror(errno));
  char line[256];
  int64_t kb = -1;
  while (fgets(line, sizeof line, f) != NULL) {
    if (strncmp(line, "VmRSS:", 6) == 0) {
      kb = strtoll(line + 6, NULL, 10);
      break;
    }
  }
  fclose(f);
  if (kb < 0)
    fail("W5: no VmRSS in /proc/self/status");
  return kb * 1024;
}

/* Runs once the task's state is saved: publish it, count it. */
static bool w5_unlock(goro_g *g, void *slot) {
  *(goro_g **)slot = g;
  atomic_fetch_add_explicit(&w5s.parked, 1, memory_order_release);
  return true;
}

static void w5_task(void *arg) {
  uintptr_t i = (uintptr_t)arg;
  goro_park(w5_unlock, &w5s.slots[i], "bench W5");
  atomic_fetch_add_explicit(&w5s.woke, 1, memory_order_relaxed);
}

static void w5_spawner(void *arg) {
  (void)arg;
  for (int64_t i = 0; i < w5s.n; i++) {
    int64_t id = goro_spawn(w5_task, (void *)(uintptr_t)i);
    if (id < 0) {
      atomic_store(&spawn_failed, id);
      return;
    }
  }
}

static void w5_nop(void *arg) { (void)arg; }

static double w5(int64_t n, const char **unit) {
  w5s.n = n;
  /* The slot array is populated up front so that it is in "before". */
  size_t bytes = (size_t)n * sizeof(goro_g *);
  w5s.slots = mmap(NULL, bytes, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0);
  if (w5s.slots == MAP_FAILED)
    fail("W5: mmap: %s", strerror(errno));
  /* Let the runtime start its threads before "before", as Go's has. */
  spawn_or_fail(w5_nop, NULL);
  wait_all();

  int64_t before = vmrss();
  spawn_or_fail(w5_spawner, NULL);
  const struct timespec tick = { 0, 1000000 };   /* 1 ms */
  while (atomic_load_explicit(&w5s.parked, memory_order_acquire) < n) {
    if (atomic_load(&spawn_failed))
      fail("W5: goro_spawn after %lld tasks: %s",
           (long long)atomic_load(&w5s.parked),
           goro_strerror((int)atomic_load(&spawn_failed)));
    nanosleep(&tick, NULL);
  }
  int64_t after = vmrss();

  /* Wake them all in batches (Go: close(gate)), then wait. */
  const int batch = 4096;
  for (int64_t i = 0; i < n; i += batch) {
    int k = n - i < batch ? (int)(n - i) : batch;
    goro_ready_batch(w5s.slots + i, k);
  }
  wait_all();
  if (atomic_load(&w5s.woke) != n)
    fail("W5: %lld of %lld woke", (long long)atomic_load(&w5s.woke),
         (long long)n);
  munmap(w5s.slots, bytes);
  *unit = "bytes/task";
  return (double)(after - before) / (double)n;
}

/* }====================================================== */


#ifndef BENCH_NO_CHAN

static goro_chan *chan_or_fail(size_t elemsize, size_t cap) {
  goro_chan *c = goro_chan_new(elemsize, cap);
  if (c == NULL)
    fail("goro_chan_new: out of memory");
  return c;
}

static void send_or_fail(goro_chan *c, int64_t v) {
  int rc = goro_chan_send(c, &v);
  if (rc != GORO_OK)
    fail("goro_chan_send: %s", goro_strerror(rc));
}

static int64_t recv_or_fail(goro_chan *c) {
  int64_t v;
  bool ok;
  int rc = goro_chan_recv(c, &v, &ok);
  if (rc != GORO_OK || !ok)
    fail("goro_chan_recv: %s", rc != GORO_OK ? goro_strerror(rc) : "closed");
  return v;
}


/*
** {======================================================
** W2: ping-pong over two unbuffered channels, n round trips
** =======================================================
*/

static struct {
  int64_t n, last;
  goro_chan *ping, *pong;
} w2s;

static void w2_pinger(void *arg) {
  (void)arg;
  for (int64_t i = 0; i < w2s.n; i++) {
    send_or_fail(w2s.ping, i);
    w2s.last = recv_or_fail(w2s.pong);
  }
}

static void w2_ponger(void *arg) {
  (void)arg;
  for (int64_t i = 0; i < w2s.n; i++) {
    int64_t v = recv_or_fail(w2s.ping);
    send_or_fail(w2s.pong, v + 1);
  }
}

static double w2(int64_t n, const char **unit) {
  w2s.n = n;
  w2s.ping = chan_or_fail(sizeof(int64_t), 0);
  w2s.pong = chan_or_fail(sizeof(int64_t), 0);
  int64_t start = now_ns();
  spawn_or_fail(w2_pinger, NULL);
  spawn_or_fail(w2_ponger, NULL);
  wait_all();
  double r = per_op(start, n);
  if (w2s.last != n)
    fail("W2: last reply %lld, want %lld", (long long)w2s.last, (long long)n);
  goro_chan_free(w2s.ping);
  goro_chan_free(w2s.pong);
  *unit = "ns/roundtrip";
  return r;
}

/* }====================================================== */


/*
** {======================================================
** W3: one producer, one consumer, buffered channel of cap 1024
** =======================================================
*/

static struct {
  int64_t n, sum, got;
  goro_chan *c;
} w3s;

static void w3_producer(void *arg) {
  (void)arg;
  for (int64_t i = 0; i < w3s.n; i++)
    send_or_fail(w3s.c, i);
  goro_chan_close(w3s.c);
}

static void w3_consumer(void *arg) {
  (void)arg;
  int64_t v, sum = 0, got = 0;
  bool ok;
  for (;;) {
    goro_chan_recv(w3s.c, &v, &ok);
    if (!ok)
      break;
    sum += v;
    got++;
  }
  w3s.sum = sum;
  w3s.got = got;
}

static double w3(int64_t n, const char **unit) {
  w3s.n = n;
  w3s.c = chan_or_fail(sizeof(int64_t), 1024);
  int64_t start = now_ns();
  spawn_or_fail(w3_producer, NULL);
  spawn_or_fail(w3_consumer, NULL);
  wait_all();
  double r = per_op(start, n);
  if (w3s.got != n || w3s.sum != n * (n - 1) / 2)
    fail("W3: got %lld items, sum %lld", (long long)w3s.got,
         (long long)w3s.sum);
  goro_chan_free(w3s.c);
  *unit = "ns/item";
  return r;
}

/* }====================================================== */


/*
** {======================================================
** W4: four producers on unbuffered channels, one consumer selecting
** =======================================================
*/

#define W4_NP 4

static struct {
  int64_t per, sum, got;
  goro_chan *c[W4_NP];
} w4s;

static void w4_producer(void *arg) {
  goro_chan *c = arg;
  for (int64_t i = 0; i < w4s.per; i++)
    send_or_fail(c, i);
  goro_chan_close(c);
}

static void w4_consumer(void *arg) {
  (void)arg;
  int64_t v, sum = 0, got = 0;
  goro_select_case cases[W4_NP];
  for (int i = 0; i < W4_NP; i++)
    cases[i] = (goro_select_case){ .c = w4s.c[i], .dir = GORO_SELECT_RECV,
                                   .elem = &v };
  int open = W4_NP;
  while (open > 0) {
    int chosen;
    int rc = goro_select(cases, W4_NP, true, &chosen);
    if (rc != GORO_OK || chosen < 0 || chosen >= W4_NP)
      fail("W4: goro_select: %s (chosen %d)", goro_strerror(rc), chosen);
    if (cases[chosen].ok) {
      sum += v;
      got++;
    } else {
      cases[chosen].c = NULL;   /* Go: c = nil */
      open--;
    }
  }
  w4s.sum = sum;
  w4s.got = got;
}

static double w4(int64_t n, const char **unit) {
  w4s.per = n / W4_NP;
  n = w4s.per * W4_NP;
  for (int i = 0; i < W4_NP; i++)
    w4s.c[i] = chan_or_fail(sizeof(int64_t), 0);
  int64_t start = now_ns();
  for (int i = 0; i < W4_NP; i++)
    spawn_or_fail(w4_producer, w4s.c[i]);
  spawn_or_fail(w4_consumer, NULL);
  wait_all();
  double r = per_op(start, n);
  if (w4s.got != n || w4s.sum != W4_NP * (w4s.per * (w4s.per - 1) / 2))
    fail("W4: got %lld items, sum %lld", (long long)w4s.got,
         (long long)w4s.sum);
  for (int i = 0; i < W4_NP; i++)
    goro_chan_free(w4s.c[i]);
  *unit = "ns/item";
  return r;
}

/* }====================================================== */


/*
** {======================================================
** W7: thread-ring, 503 tasks pass a token n hops
** =======================================================
*/

#define W7_RING 503

static struct {
  goro_chan *c[W7_RING];
  int64_t n;
  _Atomic int64_t winner;
} w7s;

static void w7_task(void *arg) {
  int id = (int)(uintptr_t)arg;
  goro_chan *in = w7s.c[id], *out = w7s.c[(id + 1) % W7_RING];
  for (;;) {
    int64_t t;
    bool ok;
    goro_chan_recv(in, &t, &ok);
    if (!ok)
      return;
    if (t == 0) {
      atomic_store(&w7s.winner, id + 1);
      for (int j = 0; j < W7_RING; j++)
        goro_chan_close(w7s.c[j]);
      return;
    }
    send_or_fail(out, t - 1);
  }
}

static void w7_starter(void *arg) {
  (void)arg;
  send_or_fail(w7s.c[0], w7s.n);
}

static double w7(int64_t n, const char **unit) {
  w7s.n = n;
  atomic_store(&w7s.winner, -1);
  for (int i = 0; i < W7_RING; i++)
    w7s.c[i] = chan_or_fail(sizeof(int64_t), 0);
  int64_t start = now_ns();
  for (int i = 0; i < W7_RING; i++)
    spawn_or_fail(w7_task, (void *)(uintptr_t)i);
  spawn_or_fail(w7_starter, NULL);
  wait_all();
  double r = per_op(start, n);
  if (atomic_load(&w7s.winner) != n % W7_RING + 1)
    fail("W7: winner %lld, want %lld", (long long)atomic_load(&w7s.winner),
         (long long)(n % W7_RING + 1));
  for (int i = 0; i < W7_RING; i++)
    goro_chan_free(w7s.c[i]);
  *unit = "ns/hop";
  return r;
}

/* }====================================================== */

#endif /* BENCH_NO_CHAN */


static const struct workload {
  const char *name;
  int64_t n;                                   /* default N */
  double (*run)(int64_t n, const char **unit);
} workloads[] = {
  { "W1", 1000000, w1 },
#ifndef BENCH_NO_CHAN
  { "W2", 1000000, w2 },
  { "W3", 10000000, w3 },
  { "W4", 4000000, w4 },
#endif
  { "W5", 1000000, w5 },
#ifndef BENCH_NO_CHAN
  { "W7", 10000000, w7 },
#endif
};

#define NWORKLOADS (sizeof workloads / sizeof workloads[0])

static void usage(void) {
  fprintf(stderr,
          "usage: %s -w WORKLOAD [-n N] [-procs P]\n"
          "       %s -list\n", progname, progname);
  exit(2);
}

int main(int argc, char **argv) {
  const char *w = NULL;
  int64_t n = 0;
  int procs = 0;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] == '-' && a[1] == '-')   /* accept --flag like Go's flag */
      a++;
    if (strcmp(a, "-list") == 0) {
      for (size_t k = 0; k < NWORKLOADS; k++)
        puts(workloads[k].name);
      return 0;
    } else if (strcmp(a, "-w") == 0 && i + 1 < argc) {
      w = argv[++i];
    } else if (strcmp(a, "-n") == 0 && i + 1 < argc) {
      n = strtoll(argv[++i], NULL, 10);
    } else if (strcmp(a, "-procs") == 0 && i + 1 < argc) {
      procs = atoi(argv[++i]);
    } else {
      usage();
    }
  }
  if (w == NULL)
    usage();
  const struct workload *wl = NULL;
  for (size_t k = 0; k < NWORKLOADS; k++)
    if (strcmp(workloads[k].name, w) == 0)
      wl = &workloads[k];
  if (wl == NULL) {
    fprintf(stderr, "%s: unknown or unsupported workload \"%s\" (try -list)\n",
            progname, w);
    return 2;
  }
  if (n <= 0)
    n = wl->n;

  int rc = goro_init(procs);   /* 0: goro's default, the CPUs */
  if (rc != GORO_OK)
    fail("goro_init: %s", goro_strerror(rc));

  const char *unit = "";
  double v = wl->run(n, &unit);
  printf("RESULT %s %.1f %s\n", wl->name, v, unit);
  fflush(stdout);
  /* No goro_shutdown: the measurement is done, and a benchmark is not the
  ** place to test shutdown.  _exit skips atexit work while Ms still run. */
  _exit(0);
}
