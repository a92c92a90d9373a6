/*
** test_netpoll.c — the poller: sleeps, timers, fd waits, DNS, and the
** deadlock check's knowledge of them.
*/
#include "testutil.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdatomic.h>
#include <sys/socket.h>

static const int64_t MS = 1000000;

/* ---- sleeps ---- */

typedef struct sleeper {
  int64_t ns, slept;
  _Atomic int *done;
} sleeper;

static void sleep_task(void *arg) {
  sleeper *s = arg;
  int64_t t0 = goro_now();
  assert_int_equal(goro_sleep(s->ns), GORO_OK);
  s->slept = goro_now() - t0;
  atomic_fetch_add(s->done, 1);
}

static void test_sleep_at_least(void **state) {
  watchdog(__func__, 30);
  _Atomic int done = 0;
  sleeper s[3] = { { 1 * MS, 0, &done }, { 20 * MS, 0, &done }, { 50 * MS, 0, &done } };
  for (int i = 0; i < 3; i++)
    assert_true(goro_spawn(sleep_task, &s[i]) > 0);
  wait_all(20);
  assert_int_equal(atomic_load(&done), 3);
  for (int i = 0; i < 3; i++)
    assert_true(s[i].slept >= s[i].ns);
  /* The thread that is not a goroutine sleeps the same way. */
  int64_t t0 = goro_now();
  assert_int_equal(goro_sleep(10 * MS), GORO_OK);
  assert_true(goro_now() - t0 >= 10 * MS);
}

/* Many sleepers at once: all wake, none early. */
static void test_many_sleepers(void **state) {
  watchdog(__func__, 60);
  int n = (int)scaled(20000);
  sleeper *s = calloc((size_t)n, sizeof *s);
  _Atomic int done = 0;
  for (int i = 0; i < n; i++) {
    s[i] = (sleeper){ (int64_t)(i % 50) * MS, 0, &done };
    assert_true(goro_spawn(sleep_task, &s[i]) > 0);
  }
  wait_all(60);
  assert_int_equal(atomic_load(&done), n);
  for (int i = 0; i < n; i++)
    assert_true(s[i].slept >= s[i].ns);
  free(s);
}

/* goro_sleep_k: the goroutine restarts at k with nothing on its stack. */
typedef struct ksleeper {
  goro_pollop op;
  int rounds, left;
  _Atomic int *done;
} ksleeper;

static void ksleep_step(void *arg) {
  ksleeper *k = arg;
  if (k->op.kind != 0)
    assert_int_equal(goro_pollop_finish(&k->op), GORO_OK);
  while (k->left > 0) {
    k->left--;
    goro_sleep_k(1 * MS, &k->op, ksleep_step, k);
  }
  atomic_fetch_add(k->done, 1);
}

static void test_sleep_k(void **state) {
  watchdog(__func__, 60);
  enum { N = 100 };
  static ksleeper k[N];
  _Atomic int done = 0;
  for (int i = 0; i < N; i++) {
    k[i] = (ksleeper){ .left = 5, .done = &done };
    assert_true(goro_spawn(ksleep_step, &k[i]) > 0);
  }
  wait_all(60);
  assert_int_equal(atomic_load(&done), N);
}

/* ---- timers ---- */

static void send_now(void *ud, int64_t now) {
  goro_chan_trysend(ud, &now);   /* a full channel drops the tick, as Go */
}

static void test_timers(void **state) {
  watchdog(__func__, 30);
  goro_chan *c = goro_chan_new(sizeof(int64_t), 1);
  int64_t t0 = goro_now(), v;
  goro_timer *t = goro_timer_start(20 * MS, 0, send_now, c);
  assert_non_null(t);
  assert_int_equal(goro_chan_recv(c, &v, NULL), GORO_OK);
  assert_true(v - t0 >= 20 * MS);
  assert_false(goro_timer_stop(t));          /* it fired already */
  assert_false(goro_timer_reset(t, 10 * MS));
  assert_int_equal(goro_chan_recv(c, &v, NULL), GORO_OK);   /* fires again */
  assert_false(goro_timer_reset(t, 10 * 1000 * MS));   /* had fired */
  assert_true(goro_timer_stop(t));           /* stopped a pending one */
  goro_timer_free(t);

  /* A ticker: ticks keep coming; a slow receiver loses some. */
  goro_timer *tk = goro_timer_start(5 * MS, 5 * MS, send_now, c);
  int64_t prev = 0;
  for (int i = 0; i < 5; i++) {
    assert_int_equal(goro_chan_recv(c, &v, NULL), GORO_OK);
    assert_true(v > prev);
    prev = v;
  }
  goro_timer_free(tk);
  goro_chan_free(c);
}

/* A reset never lets the deadline it replaced fire: the old one is due
** (or being fired) just as the reset comes, and a reset to an hour must
** then send nothing.  (The handle started for the old deadline fired for
** the reset timer when it ran before the poller had served the reset.) */
static void test_timer_reset_drops_old_deadline(void **state) {
  watchdog(__func__, 60);
  goro_chan *c = goro_chan_new(sizeof(int64_t), 1);
  int64_t v;
  int rounds = (int)scaled(2000), reset_pending = 0;
  for (int i = 0; i < rounds; i++) {
    goro_timer *t = goro_timer_start(0, 0, send_now, c);
    assert_non_null(t);
    for (volatile int spin = 0; spin < (i % 64) * 50; spin++)
      ;
    if (goro_timer_reset(t, 3600 * 1000 * MS)) {
      reset_pending++;
      goro_sleep(MS / 4);   /* the old deadline had all the time to fire */
      assert_int_equal(goro_chan_tryrecv(c, &v, NULL), GORO_EAGAIN);
    } else {
      assert_int_equal(goro_chan_recv(c, &v, NULL), GORO_OK);   /* fired first */
    }
    assert_true(goro_timer_stop(t));
    goro_timer_free(t);
  }
  print_message("%d of %d resets found the timer pending\n", reset_pending, rounds);
  goro_chan_free(c);
}

/* Resets from one goroutine while the poller starts and fires the timer:
** under TSan, the deadline written by a reset raced with the poller
** reading it for the one before.  Between resets the goroutine spins
** rather than syncing with anything the poller does. */
static void resetter(void *arg) {
  goro_timer *t = arg;
  for (int i = 0; i < 2000; i++) {
    goro_timer_reset(t, (i % 3) * MS / 10);
    for (volatile int spin = 0; spin < 2000; spin++)
      ;
  }
}

static void test_timer_reset_while_firing(void **state) {
  watchdog(__func__, 60);
  goro_chan *c = goro_chan_new(sizeof(int64_t), 1);
  goro_timer *t = goro_timer_start(0, 0, send_now, c);
  goro_timer *tk = goro_timer_start(MS / 10, MS / 10, send_now, c);
  assert_true(goro_spawn(resetter, t) > 0);
  assert_true(goro_spawn(resetter, tk) > 0);
  int64_t v;
  while (goro_numgoroutine() > 0)
    goro_chan_tryrecv(c, &v, NULL);
  goro_timer_free(t);
  goro_timer_free(tk);
  wait_all(10);
  goro_chan_free(c);
}

/* Timer objects outlive a stop of the runtime, and fire after the next
** start though nothing else asks the poller for anything (they waited
** for the next request, for ever if none came). */
static void test_timer_across_restart(void **state) {
  watchdog(__func__, 30);
  assert_int_equal(goro_init(1), GORO_OK);
  goro_chan *c = goro_chan_new(sizeof(int64_t), 1);
  goro_chan *tc = goro_chan_new(sizeof(int64_t), 1);
  goro_timer *t = goro_timer_start(20 * MS, 0, send_now, c);
  goro_timer *tk = goro_timer_start(5 * MS, 5 * MS, send_now, tc);
  goro_timer *stopped = goro_timer_start(20 * MS, 0, send_now, c);
  assert_true(goro_timer_stop(stopped));
  goro_shutdown();

  assert_int_equal(goro_init(2), GORO_OK);
  int64_t v;
  assert_int_equal(goro_chan_recv(c, &v, NULL), GORO_OK);
  assert_int_equal(goro_chan_recv(tc, &v, NULL), GORO_OK);
  assert_int_equal(goro_chan_recv(tc, &v, NULL), GORO_OK);
  assert_false(goro_timer_stop(t));   /* fired */
  assert_true(goro_timer_stop(tk));
  assert_false(goro_timer_stop(stopped));
  goro_timer_free(t);
  goro_timer_free(tk);
  goro_timer_free(stopped);
  goro_shutdown();
  goro_chan_free(c);
  goro_chan_free(tc);
}

/* Durations of centuries and past INT64_MAX from now saturate: the timer
** stays pending rather than wrapping to a deadline in the past. */
static void test_timer_huge(void **state) {
  watchdog(__func__, 30);
  goro_chan *c = goro_chan_new(sizeof(int64_t), 1);
  int64_t v;
  goro_timer *t = goro_timer_start(INT64_MAX, 0, send_now, c);
  goro_timer *tk = goro_timer_start(INT64_MAX, INT64_MAX, send_now, c);
  goro_timer *r = goro_timer_start(MS, 0, send_now, c);
  assert_true(goro_timer_reset(r, INT64_MAX));
  assert_int_equal(goro_sleep(INT64_MIN), GORO_OK);
  assert_int_equal(goro_sleep(5 * MS), GORO_OK);
  assert_int_equal(goro_chan_tryrecv(c, &v, NULL), GORO_EAGAIN);
  assert_true(goro_timer_stop(t));
  assert_true(goro_timer_stop(tk));
  assert_true(goro_timer_stop(r));
  goro_timer_free(t);
  goro_timer_free(tk);
  goro_timer_free(r);
  goro_chan_free(c);
}

/* ---- fd waits ---- */

typedef struct piper {
  goro_fd *f;
  int rc;
  char got[8];
  _Atomic int *done;
} piper;

static void pipe_reader(void *arg) {
  piper *p = arg;
  for (;;) {
    ssize_t n = read(goro_fd_fileno(p->f), p->got, sizeof p->got);
    if (n > 0) { p->rc = GORO_OK; break; }
    int e = errno;
    assert_true(n < 0 && e == EAGAIN);
    p->rc = goro_fd_wait(p->f, GORO_READ, 0);
    if (p->rc != GORO_OK) break;
  }
  atomic_fetch_add(p->done, 1);
}

static void test_fd_wait(void **state) {
  watchdog(__func__, 30);
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  _Atomic int done = 0;
  piper p = { goro_fd_open(fds[0]), -100, {0}, &done };
  assert_true(goro_spawn(pipe_reader, &p) > 0);
  goro_sleep(20 * MS);                       /* let it park */
  assert_int_equal(atomic_load(&done), 0);
  assert_int_equal(write(fds[1], "hi", 2), 2);
  wait_all(10);
  assert_int_equal(p.rc, GORO_OK);
  assert_memory_equal(p.got, "hi", 2);

  /* A deadline. */
  int64_t t0 = goro_now();
  assert_int_equal(goro_fd_wait(p.f, GORO_READ, goro_now() + 30 * MS), GORO_ETIMEDOUT);
  assert_true(goro_now() - t0 >= 30 * MS);

  /* Close wakes a waiter with GORO_ECLOSED. */
  piper q = { p.f, -100, {0}, &done };
  assert_true(goro_spawn(pipe_reader, &q) > 0);
  goro_sleep(20 * MS);
  goro_fd_close(p.f);
  wait_all(10);
  assert_int_equal(q.rc, GORO_ECLOSED);
  close(fds[1]);
}

/* ---- DNS ---- */

static void test_getaddrinfo(void **state) {
  watchdog(__func__, 30);
  struct addrinfo hints = { .ai_family = AF_INET, .ai_socktype = SOCK_STREAM };
  struct addrinfo *res = NULL;
  assert_int_equal(goro_getaddrinfo("127.0.0.1", "80", &hints, &res), 0);
  assert_non_null(res);
  assert_int_equal(res->ai_family, AF_INET);
  freeaddrinfo(res);
  assert_int_not_equal(goro_getaddrinfo("no-such-host.invalid", NULL, &hints, &res), 0);
}

/* ---- stopping and starting again ---- */

static void busy_sleeper(void *arg) {
  (void)arg;
  for (;;)
    goro_sleep(1);   /* a request to the poller each time round */
}

/* A pipe whose read end the poller has watched: a wait on it timed out. */
static goro_fd *watched_pipe(int fds[2]) {
  assert_int_equal(pipe(fds), 0);
  goro_fd *f = goro_fd_open(fds[0]);
  assert_non_null(f);
  assert_int_equal(goro_fd_wait(f, GORO_READ, goro_now() + MS), GORO_ETIMEDOUT);
  return f;
}

static void assert_fd_closed(int fd) {
  errno = 0;
  assert_int_equal(fcntl(fd, F_GETFD), -1);
  assert_int_equal(errno, EBADF);
}

/* An fd closed just before goro_shutdown is closed by the stop, not lost
** with a request the poller had not yet looked at, while goroutines keep
** the poller busy.  Under LSan this also checks that the timers of the
** sleeps the stop drops are freed (they leaked). */
static void test_close_then_shutdown(void **state) {
  watchdog(__func__, 120);
  for (long i = 0; i < scaled(400); i++) {
    assert_int_equal(goro_init(2), GORO_OK);
    for (int k = 0; k < 4; k++)
      assert_true(goro_spawn(busy_sleeper, NULL) > 0);
    int fds[2];
    goro_fd *f = watched_pipe(fds);
    goro_fd_close(f);
    goro_shutdown();
    assert_fd_closed(fds[0]);
    close(fds[1]);
  }
}

static void parked_reader(void *arg) {
  goro_fd_wait(arg, GORO_READ, 0);   /* dropped by the shutdown */
}

/* An fd outlives a stop of the runtime: waited on before it, with a
** goroutine still parked on it when it came, the fd works after a start
** (libuv aborted on its closed poll handle; the dropped reader made the
** next one fail with GORO_EINVAL). */
static void test_fd_across_restart(void **state) {
  watchdog(__func__, 30);
  assert_int_equal(goro_init(1), GORO_OK);
  int fds[2];
  goro_fd *f = watched_pipe(fds);
  assert_true(goro_spawn(parked_reader, f) > 0);
  goro_sleep(20 * MS);   /* let it park */
  goro_shutdown();

  assert_int_equal(goro_init(2), GORO_OK);
  assert_int_equal(goro_fd_wait(f, GORO_READ, goro_now() + MS), GORO_ETIMEDOUT);
  assert_int_equal(write(fds[1], "x", 1), 1);
  assert_int_equal(goro_fd_wait(f, GORO_READ, goro_now() + 10000 * MS), GORO_OK);
  goro_fd_close(f);
  goro_shutdown();
  assert_fd_closed(fds[0]);
  close(fds[1]);
}

/* ---- deadlock detection knows about the poller ---- */

static void on_deadlock(void *ud) {
  (void)ud;
  (void)!write(2, "deadlock\n", 9);
  _exit(3);
}

static void sleep_then_send(void *arg) {
  goro_sleep(50 * MS);
  goro_chan_send(arg, NULL);
}

static int child(void (*body)(void)) {
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    signal(SIGALRM, SIG_DFL);   /* not the parent's watchdog */
    alarm(30 * (unsigned)test_slowdown());
    goro_init(2);
    goro_set_deadlock_handler(on_deadlock, NULL);
    body();
    _exit(0);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status);
}

static void alive_while_sleeping(void) {
  goro_chan *c = goro_chan_new(0, 0);
  goro_spawn(sleep_then_send, c);
  goro_chan_recv(c, NULL, NULL);   /* not a deadlock: the sleeper will send */
  goro_wait(-1);
  goro_chan_free(c);
}

static void dead_after_timers(void) {
  goro_chan *c = goro_chan_new(0, 0);
  goro_sleep(10 * MS);
  goro_chan_recv(c, NULL, NULL);   /* nothing left that could send */
}

static void long_sleep(void *arg) {
  (void)arg;
  goro_sleep(30000 * MS);
}

/* A sleep dropped by a stop no longer counts as a pending wait: after a
** start the deadlock check sees again (it stayed blind). */
static void dead_after_restart(void) {
  goro_spawn(long_sleep, NULL);
  goro_sleep(20 * MS);   /* let it park */
  goro_shutdown();
  goro_init(2);
  goro_set_deadlock_handler(on_deadlock, NULL);
  goro_chan *c = goro_chan_new(0, 0);
  goro_chan_recv(c, NULL, NULL);
}

static void test_deadlock_and_poller(void **state) {
  watchdog(__func__, 60);
  for (int i = 0; i < 5; i++)
    assert_int_equal(child(alive_while_sleeping), 0);
  assert_int_equal(child(dead_after_timers), 3);
  assert_int_equal(child(dead_after_restart), 3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    /* First: it forks, and libuv's thread pool (DNS) never exits, which
    ** ThreadSanitizer does not allow before a fork. */
    cmocka_unit_test(test_deadlock_and_poller),
    cmocka_unit_test(test_close_then_shutdown),
    cmocka_unit_test(test_fd_across_restart),
    cmocka_unit_test(test_timer_across_restart),
    ON(1, test_sleep_at_least),
    ON(2, test_sleep_at_least),
    ON(2, test_many_sleepers),
    ON(1, test_sleep_k),
    ON(2, test_sleep_k),
    ON(2, test_timers),
    ON(1, test_timer_reset_drops_old_deadline),
    ON(2, test_timer_reset_drops_old_deadline),
    ON(2, test_timer_reset_while_firing),
    ON(2, test_timer_huge),
    ON(1, test_fd_wait),
    ON(2, test_fd_wait),
    ON(2, test_getaddrinfo),
  };
  return goro_run_tests(tests);
}
