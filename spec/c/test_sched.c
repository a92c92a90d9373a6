/*
** test_sched.c — the scheduler, through the public C API only.
*/
#include "testutil.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>

/*
** A one-shot event built on goro_park/goro_ready, as a channel or a timer
** would use them: the waiter is published under the lock, and the lock is
** released by the unlock callback once the waiter's state is saved.
*/
typedef struct event {
  pthread_mutex_t mu;
  goro_g *waiter;
  bool fired;
} event;

static void event_init(event *e) {
  pthread_mutex_init(&e->mu, NULL);
  e->waiter = NULL;
  e->fired = false;
}

static bool event_unlock(goro_g *g, void *arg) {
  event *e = arg;
  e->waiter = g;
  pthread_mutex_unlock(&e->mu);
  return true;
}

static void event_wait(event *e) {
  pthread_mutex_lock(&e->mu);
  if (e->fired) {
    pthread_mutex_unlock(&e->mu);
    return;
  }
  goro_park(event_unlock, e, "event");
}

static void event_fire(event *e) {
  pthread_mutex_lock(&e->mu);
  e->fired = true;
  goro_g *w = e->waiter;
  e->waiter = NULL;
  pthread_mutex_unlock(&e->mu);
  if (w) goro_ready(w);
}



/* ---- every spawned task runs exactly once ---- */

enum { SPAWNERS = 4 };
static long ntasks;
static _Atomic uint8_t *ran;

static void mark(void *arg) {
  atomic_fetch_add_explicit(&ran[(intptr_t)arg], 1, memory_order_relaxed);
}

static void spawner(void *arg) {
  long part = (intptr_t)arg;
  long per = ntasks / SPAWNERS;
  for (long i = part * per; i < (part + 1) * per; i++)
    assert_true(goro_spawn(mark, (void *)(intptr_t)i) > 0);
}

static void test_million_tasks_run_once(void **state) {
  watchdog(__func__, 120);
  ntasks = scaled(1000000) / SPAWNERS * SPAWNERS;
  ran = calloc((size_t)ntasks, 1);
  for (intptr_t s = 0; s < SPAWNERS; s++)
    assert_true(goro_spawn(spawner, (void *)s) > 0);
  wait_all(100);
  for (long i = 0; i < ntasks; i++)
    if (ran[i] != 1)
      fail_msg("task %ld ran %d times", i, ran[i]);
  goro_stats_t st;
  goro_stats(&st);
  assert_true(st.spawned == (uint64_t)ntasks + SPAWNERS);
  assert_int_equal(st.goroutines, 0);
  free((void *)ran);
}


/* ---- yield storms ---- */

static _Atomic long yields;

static void yielder(void *arg) {
  long n = (intptr_t)arg;
  for (long i = 0; i < n; i++) {
    goro_yield();
    atomic_fetch_add(&yields, 1);
  }
}

static void test_yield_storm(void **state) {
  watchdog(__func__, 60);
  atomic_store(&yields, 0);
  long tasks = 1000, each = scaled(200);
  for (long i = 0; i < tasks; i++)
    assert_true(goro_spawn(yielder, (void *)(intptr_t)each) > 0);
  wait_all(50);
  assert_int_equal(atomic_load(&yields), tasks * each);
}


/* ---- ids ---- */

static _Atomic int64_t seen_id;

static void record_id(void *arg) {
  atomic_store(&seen_id, goro_id());
  goro_yield();
  /* Still the same goroutine after a switch (maybe on another thread). */
  assert_int_equal(goro_id(), atomic_load(&seen_id));
}

static void test_ids(void **state) {
  watchdog(__func__, 10);
  assert_int_equal(goro_id(), 0);
  int64_t prev = 0;
  for (int i = 0; i < 100; i++) {
    int64_t id = goro_spawn(record_id, NULL);
    assert_true(id > prev);
    prev = id;
    wait_all(5);
    assert_int_equal(atomic_load(&seen_id), id);
  }
  assert_int_equal(goro_spawn(NULL, NULL), GORO_EINVAL);
}


/* ---- work spreads over both Ps ---- */

static _Atomic int running_now, max_running;

static void busy(void *arg) {
  int n = atomic_fetch_add(&running_now, 1) + 1;
  int m = atomic_load(&max_running);
  while (n > m && !atomic_compare_exchange_weak(&max_running, &m, n)) {}
  /* A few hundred µs of work, so that tasks overlap when spread. */
  int64_t until = now_ns() + 200000;
  while (now_ns() < until) {}
  atomic_fetch_sub(&running_now, 1);
}

static void spawn_all(void *arg) {
  for (int i = 0; i < 200; i++)
    assert_true(goro_spawn(busy, NULL) > 0);
}

static void test_work_spreads(void **state) {
  watchdog(__func__, 30);
  if (under_valgrind())
    skip();   /* valgrind runs one thread at a time */
  atomic_store(&max_running, 0);
  assert_true(goro_spawn(spawn_all, NULL) > 0);
  wait_all(25);
  goro_stats_t st;
  goro_stats(&st);
  assert_true(st.steals > 0);
  assert_int_equal(atomic_load(&max_running), 2);
}


/* ---- a blocking syscall does not stop the only P ---- */

static int pipefd[2];
static _Atomic long others_done;

static void blocking_reader(void *arg) {
  char c;
  goro_entersyscall();
  ssize_t n = read(pipefd[0], &c, 1);
  int err = errno;   /* copy errno before anything may switch */
  goro_exitsyscall();
  assert_int_equal(n, 1);
  (void)err;
}

static void other(void *arg) {
  atomic_fetch_add(&others_done, 1);
  if (atomic_load(&others_done) == (long)(intptr_t)arg)
    assert_int_equal(write(pipefd[1], "x", 1), 1);
}

static void test_syscall_handoff(void **state) {
  watchdog(__func__, 20);
  assert_int_equal(pipe(pipefd), 0);
  atomic_store(&others_done, 0);
  assert_true(goro_spawn(blocking_reader, NULL) > 0);
  /* Let the reader block first. */
  while (1) {
    goro_stats_t st;
    goro_stats(&st);
    if (st.insyscall == 1) break;
    usleep(100);
  }
  long n = 100;
  for (long i = 0; i < n; i++)
    assert_true(goro_spawn(other, (void *)(intptr_t)n) > 0);
  wait_all(15);
  assert_int_equal(atomic_load(&others_done), n);
  goro_stats_t st;
  goro_stats(&st);
  assert_true(st.handoffs > 0);
  close(pipefd[0]);
  close(pipefd[1]);
}


/* ---- foreign threads park and are readied ---- */

enum { FOREIGN = 8 };
static event fevents[FOREIGN];
static _Atomic int foreign_woken;

static void *foreign_waiter(void *arg) {
  event_wait(&fevents[(intptr_t)arg]);
  atomic_fetch_add(&foreign_woken, 1);
  return NULL;
}

static void waker(void *arg) {
  event_fire(&fevents[(intptr_t)arg]);
}

static void test_foreign_wait(void **state) {
  watchdog(__func__, 20);
  pthread_t th[FOREIGN];
  atomic_store(&foreign_woken, 0);
  for (intptr_t i = 0; i < FOREIGN; i++) {
    event_init(&fevents[i]);
    assert_int_equal(pthread_create(&th[i], NULL, foreign_waiter, (void *)i), 0);
  }
  for (intptr_t i = 0; i < FOREIGN; i++)
    assert_true(goro_spawn(waker, (void *)i) > 0);
  for (int i = 0; i < FOREIGN; i++)
    pthread_join(th[i], NULL);
  assert_int_equal(atomic_load(&foreign_woken), FOREIGN);
  wait_all(5);
}

/* The main thread waits on a task, and a task waits on the main thread. */
static event to_main, to_task;

static void ping_main(void *arg) {
  event_fire(&to_main);
  event_wait(&to_task);
}

static void test_main_thread_wait(void **state) {
  watchdog(__func__, 10);
  for (int i = 0; i < 1000; i++) {
    event_init(&to_main);
    event_init(&to_task);
    assert_true(goro_spawn(ping_main, NULL) > 0);
    event_wait(&to_main);
    event_fire(&to_task);
    wait_all(5);
  }
}


/* ---- park/ready stress: random hand-offs between tasks ---- */

enum { RING = 64 };
static event ring_ev[RING];
static _Atomic long ring_hops;
static long ring_total;

static void ring_node(void *arg) {
  intptr_t i = (intptr_t)arg;
  for (;;) {
    event_wait(&ring_ev[i]);
    pthread_mutex_lock(&ring_ev[i].mu);
    ring_ev[i].fired = false;
    pthread_mutex_unlock(&ring_ev[i].mu);
    long h = atomic_fetch_add(&ring_hops, 1) + 1;
    if (h >= ring_total) {
      /* Release everybody so they can finish. */
      for (int k = 0; k < RING; k++)
        if (k != i) event_fire(&ring_ev[k]);
      return;
    }
    event_fire(&ring_ev[(i + 1) % RING]);
  }
}

static void test_park_ready_ring(void **state) {
  watchdog(__func__, 60);
  ring_total = scaled(200000);
  atomic_store(&ring_hops, 0);
  for (int i = 0; i < RING; i++) event_init(&ring_ev[i]);
  for (intptr_t i = 0; i < RING; i++)
    assert_true(goro_spawn(ring_node, (void *)i) > 0);
  event_fire(&ring_ev[0]);
  /* Nodes after the token count past total exit on their next wake. */
  wait_all(50);
  assert_true(atomic_load(&ring_hops) >= ring_total);
}


/* ---- sysmon preempts a task that runs too long ---- */

static _Atomic bool stop_spinning;

static void spinner(void *arg) {
  while (!atomic_load(&stop_spinning))
    goro_preempt_point();
}

static void stopper(void *arg) {
  atomic_store(&stop_spinning, true);
}

static void test_preemption(void **state) {
  watchdog(__func__, 10);
  atomic_store(&stop_spinning, false);
  /* One spinner per P: the stopper runs only if one is preempted. */
  for (int i = 0; i < goro_gomaxprocs(); i++)
    assert_true(goro_spawn(spinner, NULL) > 0);
  assert_true(goro_spawn(stopper, NULL) > 0);
  wait_all(8);
  goro_stats_t st;
  goro_stats(&st);
  assert_true(st.preemptions > 0);
}


/* ---- goro_wait times out while a task is parked ---- */

static event never;

static void park_forever(void *arg) {
  event_wait(&never);
}

static void test_wait_timeout(void **state) {
  watchdog(__func__, 10);
  event_init(&never);
  assert_true(goro_spawn(park_forever, NULL) > 0);
  assert_int_equal(goro_wait(20 * 1000000), GORO_ETIMEDOUT);
  assert_int_equal(goro_numgoroutine(), 1);
  event_fire(&never);
  wait_all(5);
  assert_int_equal(goro_numgoroutine(), 0);
}


/* ---- shutdown with tasks parked, runnable and never started ---- */

static void test_shutdown_with_parked(void **state) {
  watchdog(__func__, 20);
  for (int round = 0; round < 20; round++) {
    assert_int_equal(goro_init(2), GORO_OK);
    assert_int_equal(goro_init(2), GORO_ESTATE);
    event_init(&never);
    for (int i = 0; i < 500; i++)
      assert_true(goro_spawn(park_forever, NULL) > 0);
    for (int i = 0; i < 100; i++)
      assert_true(goro_spawn(yielder, (void *)(intptr_t)1000) > 0);
    goro_shutdown();
    assert_int_equal(goro_spawn(park_forever, NULL), GORO_ESTATE);
  }
}


/* ---- the thread cap: syscalls queue behind it instead of failing ---- */

enum { BLOCKERS = 6 };
static int bpipe[BLOCKERS][2];

static void blocker(void *arg) {
  intptr_t i = (intptr_t)arg;
  char c;
  goro_entersyscall();
  ssize_t n = read(bpipe[i][0], &c, 1);
  goro_exitsyscall();
  assert_int_equal(n, 1);
}

/* How many live goroutines are in `state` (GORO_GSTATE_*). */
static int count_state(int state) {
  goro_ginfo all[64];
  int n = goro_goroutines(all, 64);
  assert_true(n <= 64);
  int count = 0;
  for (int i = 0; i < n; i++)
    if (all[i].state == state)
      count++;
  return count;
}

/*
** With 3 Ms at most, 3 blockers get a thread each and sit in read(); the
** other 3 queue, runnable, behind the cap.  The test waits until the
** runtime reports exactly that (not for a while, hoping), then lets them
** all finish.
*/
static void test_thread_cap(void **state) {
  enum { CAP = 3 };
  watchdog(__func__, 20);
  goro_config cfg = { .nprocs = 1, .maxthreads = CAP };
  assert_int_equal(goro_init_config(&cfg), GORO_OK);
  for (intptr_t i = 0; i < BLOCKERS; i++) {
    assert_int_equal(pipe(bpipe[i]), 0);
    assert_true(goro_spawn(blocker, (void *)i) > 0);
  }
  int64_t deadline = goro_now() + 10 * (int64_t)1000000000;
  while (count_state(GORO_GSTATE_SYSCALL) < CAP) {
    assert_true(goro_now() < deadline);
    usleep(1000);
  }
  goro_stats_t st;
  goro_stats(&st);
  assert_int_equal(st.insyscall, CAP);
  assert_int_equal(st.threads, CAP);
  assert_int_equal(count_state(GORO_GSTATE_SYSCALL), CAP);
  assert_int_equal(count_state(GORO_GSTATE_RUNNABLE), BLOCKERS - CAP);
  for (int i = 0; i < BLOCKERS; i++)
    assert_int_equal(write(bpipe[i][1], "x", 1), 1);
  wait_all(15);
  goro_stats(&st);
  assert_true(st.threads <= CAP);
  goro_shutdown();
  for (int i = 0; i < BLOCKERS; i++) {
    close(bpipe[i][0]);
    close(bpipe[i][1]);
  }
}


/* ---- the goroutine list: states and Go's wait reasons ---- */

static void receiver(void *arg) {
  goro_chan_recv(arg, NULL, NULL);
}

/* Wait (bounded) until goroutine id waits with `reason`; its info. */
static goro_ginfo wait_reason(int64_t id, const char *reason) {
  goro_ginfo info;
  int64_t deadline = goro_now() + 10 * (int64_t)1000000000;
  for (;;) {
    assert_true(goro_goroutine(id, &info));
    if (info.state == GORO_GSTATE_WAITING && strcmp(info.waitreason, reason) == 0)
      return info;
    assert_true(goro_now() < deadline);
    usleep(1000);
  }
}

static void test_goroutine_list(void **state) {
  watchdog(__func__, 20);
  goro_chan *plain = goro_chan_new(0, 0), *lock = goro_chan_new(0, 0);
  goro_chan_setwaitreason(lock, "semacquire");
  assert_string_equal(goro_chan_waitreason(lock), "semacquire");
  assert_null(goro_chan_waitreason(plain));
  int64_t a = goro_spawn(receiver, plain), b = goro_spawn(receiver, lock);
  goro_ginfo ia = wait_reason(a, "chan receive");
  wait_reason(b, "semacquire");
  assert_int_equal(ia.id, a);
  assert_true(ia.waitsince > 0 && ia.waitsince <= goro_now());
  /* The stamp is the first sighting's: a later look keeps it. */
  goro_ginfo again;
  assert_true(goro_goroutine(a, &again));
  assert_int_equal(again.waitsince, ia.waitsince);
  goro_ginfo all[8];
  int n = goro_goroutines(all, 8);
  assert_int_equal(n, 2);
  assert_int_equal(goro_goroutines(all, 1), 2);   /* the count, not the room */
  assert_false(goro_goroutine(0, &again));
  assert_false(goro_goroutine(a + 1000, &again));
  goro_chan_send(plain, NULL);
  goro_chan_send(lock, NULL);
  wait_all(5);
  assert_false(goro_goroutine(a, &again));
  assert_int_equal(goro_goroutines(all, 8), 0);
  assert_string_equal(goro_gstate_name(GORO_GSTATE_SYSCALL), "syscall");
  /* The main thread's waiter is not a goroutine, but has a state. */
  assert_true(goro_g_info(goro_self(), &again));
  assert_int_equal(again.id, 0);
  assert_int_equal(again.state, GORO_GSTATE_RUNNING);
  goro_chan_free(plain);
  goro_chan_free(lock);
}


/* ---- idle Ms are reused, not multiplied ---- */

static void nothing(void *arg) { (void)arg; }

static void test_threads_reused(void **state) {
  watchdog(__func__, 20);
  for (int round = 0; round < 200; round++) {
    for (int i = 0; i < 50; i++)
      assert_true(goro_spawn(nothing, NULL) > 0);
    wait_all(5);
  }
  goro_stats_t st;
  goro_stats(&st);
  /* One M per P, and one more that may be spinning or in goro_wait's
  ** hand-off; never one per burst. */
  assert_true(st.threads <= st.procs + 2);
}


/* ---- a stack overflow is reported, in a child process ---- */

static int recurse(int n) {
  volatile char pad[1024];
  pad[0] = (char)n;
  return n == 0 ? pad[0] : recurse(n + 1) + pad[0];
}

/* Recurse n levels of a little over 1 KiB each. */
static int recurse_to(int n) {
  volatile char pad[1024];
  pad[0] = (char)n;
  return n == 0 ? 1 : recurse_to(n - 1) + (pad[0] != 0);
}

/* Overflows once the test has printed its id (arg: a channel). */
static void overflow(void *arg) {
  goro_chan_recv(arg, NULL, NULL);
  recurse(1);
}

static void test_stack_overflow(void **state) {
  watchdog(__func__, 20);
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    goro_init(1);
    goro_chan *go_on = goro_chan_new(0, 0);
    int64_t id = goro_spawn(overflow, go_on);
    dprintf(2, "spawned %lld\n", (long long)id);
    goro_chan_send(go_on, NULL);
    goro_wait(10LL * 1000000000);
    _exit(0);   /* not reached if the overflow was caught */
  }
  close(fds[1]);
  char buf[4096];
  int status = child_finish(pid, fds[0], buf, sizeof buf);
  assert_true(WIFSIGNALED(status));
  assert_int_equal(WTERMSIG(status), SIGABRT);
  /* Ids are never reused in a process, so the child's goroutine has the
  ** id it was given, not 1. */
  long long id = 0;
  assert_int_equal(sscanf(buf, "spawned %lld", &id), 1);
  char want[64];
  snprintf(want, sizeof want, "goroutine %lld: stack overflow", id);
  assert_non_null(strstr(buf, want));
}


/* ---- a spawn may ask for a bigger stack than the default ---- */

static _Atomic int deep_done;

/* Uses about 320 KiB of stack (more under ASan), five times the default
** this test starts the runtime with. */
static void deep(void *arg) {
  (void)arg;
  assert_true(recurse_to(320) > 0);
  atomic_fetch_add(&deep_done, 1);
}

static void shallow(void *arg) {
  (void)arg;
  atomic_fetch_add(&deep_done, 1);
}

static void test_stack_sizes(void **state) {
  watchdog(__func__, 20);
  goro_config cfg = { .nprocs = 2, .stacksize = 64 * 1024 };
  assert_int_equal(goro_init_config(&cfg), GORO_OK);
  goro_spawn_opts big = { .stacksize = 2 * 1024 * 1024 };
  goro_spawn_opts small = { .stacksize = 16 * 1024 };   /* the default's */
  /* Interleaved, so that dead Gs of one size are reused for the other. */
  for (int i = 0; i < 200; i++) {
    assert_true(goro_spawn_ex(deep, NULL, &big) > 0);
    assert_true(goro_spawn_ex(shallow, NULL, i % 2 ? &small : NULL) > 0);
  }
  wait_all(15);
  assert_int_equal(atomic_load(&deep_done), 400);
  /* Three sizes besides the default: a fourth bigger one is refused, a
  ** size between two gets the next class up. */
  goro_spawn_opts o1 = { .stacksize = 3 * 1024 * 1024 };
  goro_spawn_opts o2 = { .stacksize = 4 * 1024 * 1024 };
  goro_spawn_opts o3 = { .stacksize = 5 * 1024 * 1024 };
  goro_spawn_opts mid = { .stacksize = 2 * 1024 * 1024 + 1 };
  assert_true(goro_spawn_ex(shallow, NULL, &o1) > 0);
  assert_true(goro_spawn_ex(shallow, NULL, &o2) > 0);
  assert_int_equal(goro_spawn_ex(shallow, NULL, &o3), GORO_EINVAL);
  assert_true(goro_spawn_ex(deep, NULL, &mid) > 0);
  wait_all(15);
}


/* ---- GORO_DEBUG=schedtrace prints Go-style lines ---- */

static void test_schedtrace(void **state) {
  watchdog(__func__, 20);
  int fds[2];
  assert_int_equal(pipe(fds), 0);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(fds[1], 2);
    close(fds[0]);
    setenv("GORO_DEBUG", "schedtrace=5", 1);
    goro_init(2);
    usleep(60000);
    goro_shutdown();
    _exit(0);
  }
  close(fds[1]);
  char buf[8192];
  int status = child_finish(pid, fds[0], buf, sizeof buf);
  assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  assert_non_null(strstr(buf, "SCHED "));
  assert_non_null(strstr(buf, "gomaxprocs=2 idleprocs="));
  assert_non_null(strstr(buf, "runqueue=0 [0 0]"));
}


/* ---- GORO_MAXPROCS ---- */

static void test_maxprocs_env(void **state) {
  watchdog(__func__, 10);
  setenv("GORO_MAXPROCS", "3", 1);
  assert_int_equal(goro_init(0), GORO_OK);
  assert_int_equal(goro_gomaxprocs(), 3);
  goro_shutdown();
  unsetenv("GORO_MAXPROCS");
  assert_int_equal(goro_init(5), GORO_OK);
  assert_int_equal(goro_gomaxprocs(), 5);
  goro_shutdown();
}



int main(void) {
  const struct CMUnitTest tests[] = {
    ON(1, test_ids),
    ON(1, test_million_tasks_run_once),
    ON(2, test_million_tasks_run_once),
    ON(1, test_yield_storm),
    ON(2, test_yield_storm),
    ON(2, test_work_spreads),
    ON(1, test_syscall_handoff),
    ON(1, test_foreign_wait),
    ON(2, test_foreign_wait),
    ON(1, test_main_thread_wait),
    ON(2, test_main_thread_wait),
    ON(1, test_park_ready_ring),
    ON(2, test_park_ready_ring),
    ON(1, test_preemption),
    ON(2, test_preemption),
    ON(2, test_wait_timeout),
    ON(2, test_threads_reused),
    ON(2, test_goroutine_list),
    cmocka_unit_test(test_shutdown_with_parked),
    cmocka_unit_test(test_thread_cap),
    cmocka_unit_test(test_stack_overflow),
    cmocka_unit_test_teardown(test_stack_sizes, teardown),
    cmocka_unit_test(test_schedtrace),
    cmocka_unit_test(test_maxprocs_env),
  };
  return goro_run_tests(tests);
}
