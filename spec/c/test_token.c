/*
** test_token.c — tokens, stackless parking (goro_park_k and the channel
** continuation forms) and deadlock detection.
*/
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>

/* A cheap random number in [0, n), racy by design (any value will do). */
static _Atomic uint32_t trand_state = 12345;
static int trand(int n) {
  uint32_t x = atomic_load_explicit(&trand_state, memory_order_relaxed);
  x = x * 1103515245u + 12345u;
  atomic_store_explicit(&trand_state, x, memory_order_relaxed);
  return (int)((x >> 16) % (uint32_t)n);
}


/*
** {======================================================
** Tokens
** =======================================================
*/

/* A critical section guarded by nothing but the token: `inside` catches
** two owners at once, `counter` (plain) loses updates if that happens. */
typedef struct excl {
  goro_token *t;
  _Atomic int inside;
  long counter;
  int rounds;
  _Atomic int overlaps;
} excl;

static void enter(excl *e) {
  if (atomic_fetch_add(&e->inside, 1) != 0)
    atomic_fetch_add(&e->overlaps, 1);
}

static void leave(excl *e) {
  atomic_fetch_sub(&e->inside, 1);
}

/* A bound goroutine: it owns the token whenever it runs, across yields,
** parks and random work. */
static void bound_task(void *arg) {
  excl *e = arg;
  for (int i = 0; i < e->rounds; i++) {
    enter(e);
    long c = e->counter;
    for (volatile int spin = trand(64); spin > 0; spin--) {}
    e->counter = c + 1;
    leave(e);
    if (i % 3 == 0)
      goro_yield();
  }
}

static void run_bound(int ngor, int rounds, bool foreign_too) {
  excl e = { .t = goro_token_new(), .rounds = rounds };
  assert_non_null(e.t);
  goro_spawn_opts o = { .token = e.t };
  for (int i = 0; i < ngor; i++)
    assert_true(goro_spawn_ex(bound_task, &e, &o) > 0);
  if (foreign_too) {
    /* The test's own thread takes turns through acquire and release. */
    for (int i = 0; i < rounds; i++) {
      goro_token_acquire(e.t);
      assert_true(goro_token_owned(e.t));
      enter(&e);
      e.counter++;
      leave(&e);
      goro_token_release(e.t);
    }
  }
  wait_all(60);
  assert_int_equal(atomic_load(&e.overlaps), 0);
  assert_int_equal(e.counter, (long)ngor * rounds + (foreign_too ? rounds : 0));
  goro_token_free(e.t);
}

static void test_token_excludes_1p(void **state) {
  watchdog(__func__, 60);
  run_bound(50, (int)scaled(2000), true);
}

static void test_token_excludes_2p(void **state) {
  watchdog(__func__, 60);
  run_bound(50, (int)scaled(2000), true);
}

/* Bound goroutines meeting on a channel: parks hand the token over. */
typedef struct pingpong {
  goro_chan *a, *b;
  excl *e;
  int n;
} pingpong;

static void pinger(void *arg) {
  pingpong *p = arg;
  for (int i = 0; i < p->n; i++) {
    enter(p->e); p->e->counter++; leave(p->e);
    assert_int_equal(goro_chan_send(p->a, &i), GORO_OK);
    int v;
    assert_int_equal(goro_chan_recv(p->b, &v, NULL), GORO_OK);
    assert_int_equal(v, i);
  }
}

static void ponger(void *arg) {
  pingpong *p = arg;
  for (int i = 0; i < p->n; i++) {
    int v;
    assert_int_equal(goro_chan_recv(p->a, &v, NULL), GORO_OK);
    enter(p->e); p->e->counter++; leave(p->e);
    assert_int_equal(goro_chan_send(p->b, &v), GORO_OK);
  }
}

static void test_token_pingpong(void **state) {
  watchdog(__func__, 60);
  excl e = { .t = goro_token_new() };
  enum { PAIRS = 8 };
  pingpong pp[PAIRS];
  goro_spawn_opts o = { .token = e.t };
  int n = (int)scaled(5000);
  for (int i = 0; i < PAIRS; i++) {
    pp[i] = (pingpong){ goro_chan_new(sizeof(int), 0), goro_chan_new(sizeof(int), 0), &e, n };
    assert_true(goro_spawn_ex(pinger, &pp[i], &o) > 0);
    assert_true(goro_spawn_ex(ponger, &pp[i], &o) > 0);
  }
  wait_all(60);
  assert_int_equal(atomic_load(&e.overlaps), 0);
  assert_int_equal(e.counter, 2L * PAIRS * n);
  for (int i = 0; i < PAIRS; i++) {
    goro_chan_free(pp[i].a);
    goro_chan_free(pp[i].b);
  }
  goro_token_free(e.t);
}

/* Leaving the token around "C work": the work of several goroutines then
** overlaps, while the token-guarded parts still do not. */
typedef struct release_work {
  excl *e;
  _Atomic int outside, maxoutside;
} release_work;

static void releaser(void *arg) {
  release_work *w = arg;
  for (int i = 0; i < 20; i++) {
    enter(w->e); w->e->counter++; leave(w->e);
    goro_token_release(w->e->t);
    int o = atomic_fetch_add(&w->outside, 1) + 1;
    int m = atomic_load(&w->maxoutside);
    while (o > m && !atomic_compare_exchange_weak(&w->maxoutside, &m, o)) {}
    goro_entersyscall();
    struct timespec ts = { 0, 200000 };
    nanosleep(&ts, NULL);
    goro_exitsyscall();
    atomic_fetch_sub(&w->outside, 1);
    goro_token_acquire(w->e->t);
    assert_true(goro_token_owned(w->e->t));
  }
}

static void test_token_release_around_work(void **state) {
  watchdog(__func__, 60);
  excl e = { .t = goro_token_new() };
  release_work w = { .e = &e };
  goro_spawn_opts o = { .token = e.t };
  for (int i = 0; i < 8; i++)
    assert_true(goro_spawn_ex(releaser, &w, &o) > 0);
  wait_all(60);
  assert_int_equal(atomic_load(&e.overlaps), 0);
  assert_int_equal(e.counter, 8 * 20);
  if (!under_valgrind())
    assert_true(atomic_load(&w.maxoutside) > 1);
  goro_token_free(e.t);
}

/* A foreign owner that keeps the token while goroutines wait is reported
** to the preemption hook with goid 0 and its own thread. */
static _Atomic int hook_calls;
static pthread_t hook_expect;
static _Atomic bool hook_thread_ok = true;

static void foreign_hook(pthread_t thread, int64_t goid, void *ud) {
  (void)ud;
  if (goid != 0)
    return;
  if (!pthread_equal(thread, hook_expect))
    atomic_store(&hook_thread_ok, false);
  atomic_fetch_add(&hook_calls, 1);
}

static void count_task(void *arg) {
  atomic_fetch_add((_Atomic int *)arg, 1);
}

static void test_token_foreign_owner_preempted(void **state) {
  watchdog(__func__, 60);
  goro_token *t = goro_token_new();
  hook_expect = pthread_self();
  atomic_store(&hook_calls, 0);
  goro_set_preempt_hook(foreign_hook, NULL);
  goro_token_acquire(t);
  _Atomic int ran = 0;
  goro_spawn_opts o = { .token = t };
  for (int i = 0; i < 4; i++)
    assert_true(goro_spawn_ex(count_task, &ran, &o) > 0);
  /* Keep the token until the hook fires (a few 10 ms slices at most). */
  int64_t deadline = now_ns() + 20LL * 1000000000 * test_slowdown();
  while (atomic_load(&hook_calls) == 0 && now_ns() < deadline) {}
  assert_true(atomic_load(&hook_calls) > 0);
  assert_true(atomic_load(&hook_thread_ok));
  assert_int_equal(atomic_load(&ran), 0);   /* they waited for the token */
  goro_token_release(t);
  wait_all(30);
  assert_int_equal(atomic_load(&ran), 4);
  goro_set_preempt_hook(NULL, NULL);
  goro_token_free(t);
}

/* }====================================================== */


/*
** {======================================================
** Stackless parking
** =======================================================
*/

/* A goroutine whose whole state lives in this struct: it receives n
** values with goro_chan_recv_k, restarting at kstep after each park. */
typedef struct kreceiver {
  goro_chan *c;
  goro_chanop op;
  long value;
  bool ok;
  long got, sum;
  long expect;
  _Atomic int *done;
} kreceiver;

static void kstep(void *arg) {
  kreceiver *r = arg;
  if (r->op.kind != 0) {        /* restarted after a park */
    assert_int_equal(goro_chanop_finish(&r->op, NULL), GORO_OK);
    goto got_one;
  }
  for (;;) {
    assert_int_equal(goro_chan_recv_k(r->c, &r->value, &r->ok, &r->op, kstep, r), GORO_OK);
  got_one:
    if (!r->ok)
      break;
    r->got++;
    r->sum += r->value;
  }
  atomic_fetch_add(r->done, 1);
}

static void ksender(void *arg) {
  kreceiver *r = arg;
  for (long i = 1; i <= r->expect; i++) {
    assert_int_equal(goro_chan_send(r->c, &i), GORO_OK);
    if (trand(4) == 0)
      goro_yield();
  }
}

static void test_park_k_receivers(void **state) {
  watchdog(__func__, 60);
  enum { N = 64 };
  static kreceiver r[N];
  _Atomic int done = 0;
  long n = scaled(2000);
  for (int i = 0; i < N; i++) {
    r[i] = (kreceiver){ .c = goro_chan_new(sizeof(long), (size_t)(i % 3)),
                        .expect = n, .done = &done };
    assert_true(goro_spawn(kstep, &r[i]) > 0);
    assert_true(goro_spawn(ksender, &r[i]) > 0);
  }
  /* Close each channel once its sender is through: the receiver sees the
  ** close after every value. */
  while (goro_numgoroutine() > N) {
    struct timespec ts = { 0, 1000000 };
    nanosleep(&ts, NULL);
  }
  for (int i = 0; i < N; i++)
    assert_int_equal(goro_chan_close(r[i].c), GORO_OK);
  wait_all(60);
  assert_int_equal(atomic_load(&done), N);
  for (int i = 0; i < N; i++) {
    assert_int_equal(r[i].got, n);
    assert_int_equal(r[i].sum, n * (n + 1) / 2);
    goro_chan_free(r[i].c);
  }
}

/* Thousands parked with goro_park_k keep no stack: goro_stats counts the
** stacks goroutines hold, and 20,000 parked ones hold none. */
typedef struct parked {
  goro_chan *c;
  goro_chanop op;
  char v;
  _Atomic int *woken;
} parked;

static void parked_k(void *arg) {
  parked *p = arg;
  if (p->op.kind != 0) {
    goro_chanop_finish(&p->op, NULL);
    atomic_fetch_add(p->woken, 1);
    return;
  }
  goro_chan_recv_k(p->c, &p->v, NULL, &p->op, parked_k, p);
  atomic_fetch_add(p->woken, 1);   /* only if it did not park */
}

static void test_park_k_keeps_no_stack(void **state) {
  watchdog(__func__, 120);
  int n = (int)scaled(20000);
  parked *ps = calloc((size_t)n, sizeof *ps);
  goro_chan *c = goro_chan_new(1, 0);
  _Atomic int woken = 0;
  for (int i = 0; i < n; i++) {
    ps[i] = (parked){ .c = c, .woken = &woken };
    assert_true(goro_spawn(parked_k, &ps[i]) > 0);
  }
  /* Wait until all are parked: the channel's receive queue holds n. */
  int64_t deadline = now_ns() + 60LL * 1000000000 * test_slowdown();
  goro_stats_t st;
  do {
    goro_stats(&st);
  } while (st.runqueue + st.spinning > 0 && now_ns() < deadline);
  goro_stats(&st);
  assert_true(st.stacks < 16);
  assert_int_equal(goro_chan_close(c), GORO_OK);
  wait_all(60);
  assert_int_equal(atomic_load(&woken), n);
  goro_chan_free(c);
  free(ps);
}

/* select_k: receivers over several channels, each value counted once. */
typedef struct kselect {
  goro_chan *c[3];
  goro_select_case cases[3];
  long v[3];
  goro_chanop op;
  long got;
  int closed;
} kselect;

static void kselect_step(void *arg) {
  kselect *s = arg;
  int chosen;
  if (s->op.kind != 0) {
    assert_int_equal(goro_chanop_finish(&s->op, &chosen), GORO_OK);
    goto chose;
  }
  for (;;) {
    for (int i = 0; i < 3; i++)
      s->cases[i] = (goro_select_case){ s->c[i], GORO_SELECT_RECV, &s->v[i], false };
    for (int i = 0; i < 3; i++)
      if (s->c[i] == NULL) s->cases[i].c = NULL;
    assert_int_equal(goro_select_k(s->cases, 3, true, &chosen, &s->op, kselect_step, s), GORO_OK);
  chose:
    if (s->cases[chosen].ok) {
      assert_int_equal(s->v[chosen], chosen + 1);
      s->got++;
    } else {
      s->c[chosen] = NULL;   /* closed: disable the case, as Go's nil */
      if (++s->closed == 3)
        return;
    }
  }
}

typedef struct kproducer {
  goro_chan *c;
  long v, n;
} kproducer;

static void kproduce(void *arg) {
  kproducer *p = arg;
  for (long i = 0; i < p->n; i++)
    assert_int_equal(goro_chan_send(p->c, &p->v), GORO_OK);
  assert_int_equal(goro_chan_close(p->c), GORO_OK);
}

static void test_select_k(void **state) {
  watchdog(__func__, 60);
  kselect s = { 0 };
  kproducer p[3];
  long n = scaled(20000);
  for (int i = 0; i < 3; i++) {
    s.c[i] = goro_chan_new(sizeof(long), (size_t)i);
    p[i] = (kproducer){ s.c[i], i + 1, n };
  }
  goro_chan *keep[3] = { s.c[0], s.c[1], s.c[2] };
  assert_true(goro_spawn(kselect_step, &s) > 0);
  for (int i = 0; i < 3; i++)
    assert_true(goro_spawn(kproduce, &p[i]) > 0);
  wait_all(60);
  assert_int_equal(s.got, 3 * n);
  for (int i = 0; i < 3; i++)
    goro_chan_free(keep[i]);
}

/* }====================================================== */


/*
** {======================================================
** Deadlock detection (in forked children: it ends the process)
** =======================================================
*/

static void on_deadlock(void *ud) {
  (void)ud;
  static const char msg[] = "all goroutines are asleep - deadlock!\n";
  (void)!write(2, msg, sizeof msg - 1);
  _exit(3);
}

static void blocked_forever(void *arg) {
  goro_chan_recv(arg, NULL, NULL);
}

/* Run `body` in a child with the handler set; return its exit status
** (or -signal), with its stderr in buf. */
static int in_child(void (*body)(void), char *buf, size_t size) {
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    close(fds[0]);
    dup2(fds[1], 2);
    alarm(30 * (unsigned)test_slowdown());
    signal(SIGALRM, SIG_DFL);
    goro_init(2);
    goro_set_deadlock_handler(on_deadlock, NULL);
    body();
    _exit(0);
  }
  close(fds[1]);
  int status = child_finish(pid, fds[0], buf, size);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

static void dead_recv_no_goroutines(void) {
  goro_chan *c = goro_chan_new(0, 0);
  goro_chan_recv(c, NULL, NULL);
}

static void dead_recv_with_parked(void) {
  goro_chan *c = goro_chan_new(0, 0), *d = goro_chan_new(0, 0);
  for (int i = 0; i < 10; i++)
    goro_spawn(blocked_forever, d);
  goro_chan_recv(c, NULL, NULL);
}

static void dead_wait_all(void) {
  goro_chan *d = goro_chan_new(0, 0);
  for (int i = 0; i < 10; i++)
    goro_spawn(blocked_forever, d);
  goro_wait(-1);
}

typedef struct slow_sender {
  goro_chan *c;
} slow_sender;

static void send_after_work(void *arg) {
  /* Long enough that the receiver parks first; yields keep the M busy. */
  for (int i = 0; i < 2000; i++)
    goro_yield();
  goro_chan_send(arg, NULL);
}

static void alive_recv(void) {
  goro_chan *c = goro_chan_new(0, 0);
  goro_spawn(send_after_work, c);
  goro_chan_recv(c, NULL, NULL);
  goro_wait(-1);
  goro_chan_free(c);   /* valgrind's leak check runs in the child too */
}

static void alive_syscall(void *arg) {
  /* A goroutine in a syscall could still wake the main thread. */
  goro_entersyscall();
  struct timespec ts = { 0, 50 * 1000000 };
  nanosleep(&ts, NULL);
  goro_exitsyscall();
  goro_chan_send(arg, NULL);
}

static void alive_in_syscall(void) {
  goro_chan *c = goro_chan_new(0, 0);
  goro_spawn(alive_syscall, c);
  goro_chan_recv(c, NULL, NULL);
  goro_wait(-1);
  goro_chan_free(c);
}

static void test_deadlock_detected(void **state) {
  watchdog(__func__, 120);
  char buf[4096];
  void (*dead[])(void) = { dead_recv_no_goroutines, dead_recv_with_parked, dead_wait_all };
  for (size_t i = 0; i < sizeof dead / sizeof dead[0]; i++) {
    assert_int_equal(in_child(dead[i], buf, sizeof buf), 3);
    assert_non_null(strstr(buf, "all goroutines are asleep - deadlock!"));
  }
}

static void test_no_false_deadlock(void **state) {
  watchdog(__func__, 120);
  char buf[4096];
  for (int round = 0; round < 20; round++) {
    assert_int_equal(in_child(alive_recv, buf, sizeof buf), 0);
    assert_int_equal(in_child(alive_in_syscall, buf, sizeof buf), 0);
  }
}

/* }====================================================== */

/*
** {======================================================
** goro_token_close: a token's goroutines end where they stand
** =======================================================
*/

typedef struct closing {
  goro_chan *mine;            /* only the token's receivers wait on it */
  goro_chan *mine_s;          /* only the token's senders wait on it */
  goro_chan *shared;          /* a select of theirs waits on it too */
  _Atomic int started;
  _Atomic int discarded;
  _Atomic int ranon;          /* a goroutine went on after the close */
} closing;

static void cl_recv(void *arg) {
  closing *cl = arg;
  atomic_fetch_add(&cl->started, 1);
  goro_chan_recv(cl->mine, NULL, NULL);
  atomic_fetch_add(&cl->ranon, 1);
}

static void cl_send(void *arg) {
  closing *cl = arg;
  atomic_fetch_add(&cl->started, 1);
  goro_chan_send(cl->mine_s, NULL);
  atomic_fetch_add(&cl->ranon, 1);
}

static void cl_select(void *arg) {
  closing *cl = arg;
  atomic_fetch_add(&cl->started, 1);
  goro_select_case cases[] = {
    { cl->mine, GORO_SELECT_RECV, NULL, false },
    { cl->shared, GORO_SELECT_RECV, NULL, false },
    { cl->mine_s, GORO_SELECT_SEND, NULL, false },
  };
  int chosen;
  goro_select(cases, 3, true, &chosen);
  atomic_fetch_add(&cl->ranon, 1);
}

static void cl_spin(void *arg) {
  closing *cl = arg;
  atomic_fetch_add(&cl->started, 1);
  for (;;)
    goro_yield();
}

static void cl_discard(void *local, void *ud) {
  closing *cl = ud;
  assert_ptr_equal(local, cl);
  atomic_fetch_add(&cl->discarded, 1);
}

static void cl_send_shared(void *arg) {
  goro_chan_send(((closing *)arg)->shared, NULL);
}

static void test_token_close(void **state) {
  watchdog(__func__, 60);
  static goro_fn kinds[] = { cl_recv, cl_send, cl_select, cl_spin };
  enum { EACH = 50, N = 4 * EACH };
  for (int round = 0; round < 20; round++) {
    closing cl = { goro_chan_new(0, 0), goro_chan_new(0, 0), goro_chan_new(0, 0), 0, 0, 0 };
    goro_token *t = goro_token_new();
    goro_spawn_opts opts = { .token = t, .local = &cl };
    for (int i = 0; i < N; i++)
      assert_true(goro_spawn_ex(kinds[i % 4], &cl, &opts) > 0);
    /* Some have parked, some not even started: any mix must do.  Owning
    ** t, this thread knows that none of them runs. */
    while (atomic_load(&cl.started) < N / 2 + trand(N / 2))
      usleep(100);
    goro_token_acquire(t);
    goro_token_close(t, cl_discard, &cl);
    while (atomic_load(&cl.discarded) < N)
      usleep(100);
    assert_int_equal(goro_wait(-1), GORO_OK);
    assert_int_equal(atomic_load(&cl.ranon), 0);
    assert_int_equal(goro_numgoroutine(), 0);
    /* The selects' sudogs left `shared` too: a sender meets this
    ** receiver, not a stale waiter. */
    assert_false(goro_chan_waiting(cl.shared));
    goro_spawn(cl_send_shared, &cl);
    assert_int_equal(goro_chan_recv(cl.shared, NULL, NULL), GORO_OK);
    assert_int_equal(goro_wait(-1), GORO_OK);
    assert_false(goro_chan_waiting(cl.mine));
    assert_false(goro_chan_waiting(cl.mine_s));
    goro_chan_free(cl.mine);
    goro_chan_free(cl.mine_s);
    goro_chan_free(cl.shared);
  }
}

/* }====================================================== */

int main(void) {
  const struct CMUnitTest tests[] = {
    ON(1, test_token_excludes_1p),
    ON(2, test_token_excludes_2p),
    ON(1, test_token_pingpong),
    ON(2, test_token_pingpong),
    ON(2, test_token_release_around_work),
    ON(2, test_token_foreign_owner_preempted),
    ON(1, test_park_k_receivers),
    ON(2, test_park_k_receivers),
    ON(2, test_park_k_keeps_no_stack),
    ON(1, test_select_k),
    ON(2, test_select_k),
    ON(1, test_token_close),
    ON(2, test_token_close),
    cmocka_unit_test(test_deadlock_detected),
    cmocka_unit_test(test_no_false_deadlock),
  };
  return goro_run_tests(tests);
}
