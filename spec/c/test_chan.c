/*
** test_chan.c — channels: Go's semantics, under many goroutines, from
** goroutines and from foreign threads.
*/
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>

#include "chan.h"   /* white box: to see who waits on a channel */


/* Sudogs queued on c.  A waiter is queued under the channel's lock, which
** it keeps until it is parked: once counted here, it waits. */
static int queued(goro_chan *c, bool recv) {
  goro_mutex_lock(&c->lock);
  int n = 0;
  for (sudog *sg = recv ? c->recvq.first : c->sendq.first; sg; sg = sg->next)
    n++;
  goro_mutex_unlock(&c->lock);
  return n;
}

/* Wait (bounded by the watchdog) until `n` waiters are queued on c. */
static void await_queued(goro_chan *c, bool recv, int n) {
  while (queued(c, recv) < n)
    usleep(100);
}


/* ---- basics ---- */

static void test_buffered_basics(void **state) {
  watchdog(__func__, 10);
  goro_chan *c = goro_chan_new(sizeof(int), 3);
  assert_non_null(c);
  assert_int_equal(goro_chan_cap(c), 3);
  for (int i = 1; i <= 3; i++)
    assert_int_equal(goro_chan_send(c, &i), GORO_OK);
  assert_int_equal(goro_chan_len(c), 3);
  int v = 99;
  assert_int_equal(goro_chan_trysend(c, &v), GORO_EAGAIN);
  bool ok;
  for (int i = 1; i <= 3; i++) {
    assert_int_equal(goro_chan_recv(c, &v, &ok), GORO_OK);
    assert_true(ok);
    assert_int_equal(v, i);
  }
  assert_int_equal(goro_chan_tryrecv(c, &v, &ok), GORO_EAGAIN);
  v = 7;
  assert_int_equal(goro_chan_send(c, &v), GORO_OK);
  assert_int_equal(goro_chan_close(c), GORO_OK);
  assert_int_equal(goro_chan_close(c), GORO_ECLOSED);
  assert_int_equal(goro_chan_send(c, &v), GORO_ECLOSED);
  assert_int_equal(goro_chan_trysend(c, &v), GORO_ECLOSED);
  /* A closed channel still delivers what it holds, then zeroes. */
  v = 0;
  assert_int_equal(goro_chan_recv(c, &v, &ok), GORO_OK);
  assert_true(ok);
  assert_int_equal(v, 7);
  v = 42;
  assert_int_equal(goro_chan_recv(c, &v, &ok), GORO_OK);
  assert_false(ok);
  assert_int_equal(v, 0);
  assert_int_equal(goro_chan_tryrecv(c, &v, &ok), GORO_OK);
  assert_false(ok);
  goro_chan_free(c);
}

static goro_chan *sig;

static void signaller(void *arg) {
  (void)arg;
  assert_int_equal(goro_chan_send(sig, NULL), GORO_OK);
}

static void test_zero_size_elements(void **state) {
  watchdog(__func__, 10);
  sig = goro_chan_new(0, 0);
  for (int i = 0; i < 100; i++) {
    assert_true(goro_spawn(signaller, NULL) > 0);
    bool ok = false;
    assert_int_equal(goro_chan_recv(sig, NULL, &ok), GORO_OK);
    assert_true(ok);
  }
  wait_all(5);
  goro_chan_free(sig);
}


/* A receiver of a full buffered channel with parked senders takes the
** head; the first parked sender's value moves to the tail (Go's recv). */
static goro_chan *fb;

static void fb_sender(void *arg) {
  int v = (int)(intptr_t)arg;
  assert_int_equal(goro_chan_send(fb, &v), GORO_OK);
}

static void test_full_buffer_parked_senders(void **state) {
  watchdog(__func__, 10);
  fb = goro_chan_new(sizeof(int), 3);
  for (int i = 1; i <= 3; i++)
    assert_int_equal(goro_chan_send(fb, &i), GORO_OK);
  /* Parked senders of 4, 5, 6, queued in that order. */
  for (int i = 4; i <= 6; i++) {
    assert_true(goro_spawn(fb_sender, (void *)(intptr_t)i) > 0);
    await_queued(fb, false, i - 3);
  }
  assert_int_equal(goro_chan_len(fb), 3);
  for (int i = 1; i <= 6; i++) {
    int v = 0;
    bool ok = false;
    assert_int_equal(goro_chan_recv(fb, &v, &ok), GORO_OK);
    assert_true(ok);
    assert_int_equal(v, i);
  }
  wait_all(5);
  assert_int_equal(goro_chan_len(fb), 0);
  goro_chan_free(fb);
}

/* Elements far bigger than a word, through the buffer (wrapping around)
** and handed over directly, each byte checked. */
enum { BIG = 4096 };
typedef struct { uint32_t seq; unsigned char bytes[BIG - 4]; } big;
static goro_chan *bigc;
static long big_n;

static void big_fill(big *b, uint32_t seq) {
  b->seq = seq;
  for (size_t i = 0; i < sizeof b->bytes; i++)
    b->bytes[i] = (unsigned char)(seq * 31 + i * 7);
}

static void big_sender(void *arg) {
  (void)arg;
  big *b = malloc(sizeof *b);
  for (long i = 0; i < big_n; i++) {
    big_fill(b, (uint32_t)i);
    assert_int_equal(goro_chan_send(bigc, b), GORO_OK);
  }
  free(b);
}

static void test_big_elements(void **state) {
  watchdog(__func__, 30);
  big_n = scaled(5000);
  for (size_t cap = 0; cap <= 5; cap += 5) {
    bigc = goro_chan_new(sizeof(big), cap);
    assert_non_null(bigc);
    assert_true(goro_spawn(big_sender, NULL) > 0);
    big *got = malloc(sizeof *got), *want = malloc(sizeof *want);
    for (long i = 0; i < big_n; i++) {
      bool ok;
      assert_int_equal(goro_chan_recv(bigc, got, &ok), GORO_OK);
      assert_true(ok);
      big_fill(want, (uint32_t)i);
      assert_memory_equal(got, want, sizeof *got);
    }
    wait_all(10);
    free(got);
    free(want);
    goro_chan_free(bigc);
  }
}

/* NULL where a channel belongs is an argument error (Go would block
** forever or panic); a NULL value to send is the zero value. */
static void test_null_arguments(void **state) {
  watchdog(__func__, 10);
  int v = 5;
  bool ok;
  assert_int_equal(goro_chan_send(NULL, &v), GORO_EINVAL);
  assert_int_equal(goro_chan_trysend(NULL, &v), GORO_EINVAL);
  assert_int_equal(goro_chan_recv(NULL, &v, &ok), GORO_EINVAL);
  assert_int_equal(goro_chan_tryrecv(NULL, &v, &ok), GORO_EINVAL);
  assert_int_equal(goro_chan_close(NULL), GORO_EINVAL);
  assert_int_equal(goro_chan_len(NULL), 0);
  assert_int_equal(goro_chan_cap(NULL), 0);
  goro_chan_free(NULL);
  goro_chan *c = goro_chan_new(sizeof(int), 1);
  assert_int_equal(goro_chan_send(c, NULL), GORO_OK);
  assert_int_equal(goro_chan_recv(c, &v, &ok), GORO_OK);
  assert_true(ok);
  assert_int_equal(v, 0);
  /* A receive may drop the value and the ok flag. */
  v = 9;
  assert_int_equal(goro_chan_send(c, &v), GORO_OK);
  assert_int_equal(goro_chan_recv(c, NULL, NULL), GORO_OK);
  assert_int_equal(goro_chan_len(c), 0);
  goro_chan_free(c);
  /* Sizes whose buffer cannot be addressed. */
  assert_null(goro_chan_new(SIZE_MAX / 2, 4));
}


/* ---- per-sender FIFO order ---- */

enum { FIFO_SENDERS = 8 };
typedef struct { int32_t sender, seq; } msg;
static goro_chan *fifo;
static long fifo_n;

static void fifo_sender(void *arg) {
  int32_t id = (int32_t)(intptr_t)arg;
  for (int32_t i = 0; i < fifo_n; i++) {
    msg m = { id, i };
    assert_int_equal(goro_chan_send(fifo, &m), GORO_OK);
    if (i % 7 == 0) goro_yield();
  }
}

static void fifo_run(size_t cap) {
  fifo = goro_chan_new(sizeof(msg), cap);
  fifo_n = scaled(20000);
  for (intptr_t s = 0; s < FIFO_SENDERS; s++)
    assert_true(goro_spawn(fifo_sender, (void *)s) > 0);
  int32_t next[FIFO_SENDERS] = { 0 };
  for (long k = 0; k < fifo_n * FIFO_SENDERS; k++) {
    msg m;
    bool ok;
    assert_int_equal(goro_chan_recv(fifo, &m, &ok), GORO_OK);
    assert_true(ok);
    assert_int_equal(m.seq, next[m.sender]);
    next[m.sender]++;
  }
  wait_all(10);
  goro_chan_free(fifo);
}

static void test_fifo_unbuffered(void **state) { watchdog(__func__, 30); fifo_run(0); }
static void test_fifo_buffered(void **state) { watchdog(__func__, 30); fifo_run(64); }


/* ---- N producers x M consumers, random closes ---- */

enum { PRODUCERS = 6, CONSUMERS = 5, ROUNDS = 20 };
static goro_chan *pc;
static long pc_each;
static _Atomic uint8_t *pc_seen;         /* received how many times */
static _Atomic uint8_t *pc_sent;         /* send returned OK */
static _Atomic int64_t pc_sum_sent, pc_sum_recv;
static _Atomic long pc_nsent, pc_nrecv;

static void pc_producer(void *arg) {
  long base = (long)(intptr_t)arg * pc_each;
  for (long i = 0; i < pc_each; i++) {
    int64_t v = base + i;
    int rc = goro_chan_send(pc, &v);
    if (rc == GORO_ECLOSED)
      return;
    assert_int_equal(rc, GORO_OK);
    atomic_store(&pc_sent[v], 1);
    atomic_fetch_add(&pc_sum_sent, v);
    atomic_fetch_add(&pc_nsent, 1);
  }
}

static void pc_consumer(void *arg) {
  (void)arg;
  for (;;) {
    int64_t v = -1;
    bool ok;
    assert_int_equal(goro_chan_recv(pc, &v, &ok), GORO_OK);
    if (!ok) {
      assert_int_equal(v, 0);
      return;
    }
    assert_int_equal(atomic_fetch_add(&pc_seen[v], 1), 0);   /* no duplicate */
    atomic_fetch_add(&pc_sum_recv, v);
    atomic_fetch_add(&pc_nrecv, 1);
  }
}

static void pc_closer(void *arg) {
  long after = (long)(intptr_t)arg;
  while (atomic_load(&pc_nrecv) < after)
    goro_yield();
  assert_int_equal(goro_chan_close(pc), GORO_OK);
}

static void test_producers_consumers_random_close(void **state) {
  watchdog(__func__, 90);
  srand(12345);
  pc_each = scaled(5000);
  long total = pc_each * PRODUCERS;
  for (int round = 0; round < ROUNDS; round++) {
    pc = goro_chan_new(sizeof(int64_t), (size_t)(rand() % 3) * 8);   /* 0, 8, 16 */
    pc_seen = calloc((size_t)total, 1);
    pc_sent = calloc((size_t)total, 1);
    atomic_store(&pc_sum_sent, 0);
    atomic_store(&pc_sum_recv, 0);
    atomic_store(&pc_nsent, 0);
    atomic_store(&pc_nrecv, 0);
    for (intptr_t i = 0; i < CONSUMERS; i++)
      assert_true(goro_spawn(pc_consumer, NULL) > 0);
    for (intptr_t i = 0; i < PRODUCERS; i++)
      assert_true(goro_spawn(pc_producer, (void *)i) > 0);
    /* Close after a random share has gone through: some sends fail. */
    assert_true(goro_spawn(pc_closer, (void *)(intptr_t)(rand() % total)) > 0);
    wait_all(60);
    /* Everything that was sent successfully was received once, and
    ** nothing else was. */
    assert_int_equal(atomic_load(&pc_nsent), atomic_load(&pc_nrecv));
    assert_int_equal(atomic_load(&pc_sum_sent), atomic_load(&pc_sum_recv));
    for (long v = 0; v < total; v++)
      if (pc_seen[v] != pc_sent[v])
        fail_msg("value %ld: sent %d, received %d", v, pc_sent[v], pc_seen[v]);
    free((void *)pc_seen);
    free((void *)pc_sent);
    goro_chan_free(pc);
  }
}


/* ---- close wakes blocked receivers and fails blocked senders ---- */

static goro_chan *cc;
static _Atomic int closed_senders, closed_receivers, started;

static void blocked_sender(void *arg) {
  int v = 1;
  atomic_fetch_add(&started, 1);
  int rc = goro_chan_send(cc, &v);
  if (rc == GORO_ECLOSED)
    atomic_fetch_add(&closed_senders, 1);
}

static void blocked_receiver(void *arg) {
  int v = 5;
  bool ok = true;
  atomic_fetch_add(&started, 1);
  assert_int_equal(goro_chan_recv(cc, &v, &ok), GORO_OK);
  if (!ok) {
    assert_int_equal(v, 0);
    atomic_fetch_add(&closed_receivers, 1);
  }
}

static void test_close_wakes_everyone(void **state) {
  watchdog(__func__, 30);
  for (int round = 0; round < 50; round++) {
    /* Separate channels: senders and receivers on one would just meet. */
    goro_chan *rc_chan = goro_chan_new(sizeof(int), 0);
    cc = rc_chan;
    atomic_store(&closed_receivers, 0);
    atomic_store(&started, 0);
    for (int i = 0; i < 20; i++)
      assert_true(goro_spawn(blocked_receiver, NULL) > 0);
    if (round % 2)   /* half the time close at once: racing the parks */
      await_queued(cc, true, 20);
    assert_int_equal(goro_chan_close(cc), GORO_OK);
    wait_all(10);
    assert_int_equal(atomic_load(&closed_receivers), 20);
    goro_chan_free(rc_chan);

    goro_chan *sc = goro_chan_new(sizeof(int), 2);
    cc = sc;
    atomic_store(&closed_senders, 0);
    atomic_store(&started, 0);
    for (int i = 0; i < 20; i++)
      assert_true(goro_spawn(blocked_sender, NULL) > 0);
    if (round % 2)   /* 2 fit in the buffer, 18 park */
      await_queued(cc, false, 18);
    assert_int_equal(goro_chan_close(cc), GORO_OK);
    wait_all(10);
    /* Two fit in the buffer (if they got there before the close); every
    ** other sender failed. */
    int buffered = (int)goro_chan_len(sc);
    assert_int_equal(atomic_load(&closed_senders) + buffered, 20);
    goro_chan_free(sc);
  }
}


/* ---- non-blocking operations racing ---- */

static goro_chan *nb;
static _Atomic long nb_sent, nb_recvd;
static long nb_iters;

static void nb_worker(void *arg) {
  long id = (long)(intptr_t)arg;
  for (long i = 0; i < nb_iters; i++) {
    long v = id * 1000000 + i;
    if ((i + id) % 2) {
      if (goro_chan_trysend(nb, &v) == GORO_OK)
        atomic_fetch_add(&nb_sent, 1);
    } else {
      bool ok;
      if (goro_chan_tryrecv(nb, &v, &ok) == GORO_OK) {
        assert_true(ok);
        atomic_fetch_add(&nb_recvd, 1);
      }
    }
    if (i % 16 == 0) goro_yield();
  }
}

static void test_nonblocking_races(void **state) {
  watchdog(__func__, 30);
  for (size_t cap = 0; cap <= 4; cap += 4) {
    nb = goro_chan_new(sizeof(long), cap);
    atomic_store(&nb_sent, 0);
    atomic_store(&nb_recvd, 0);
    nb_iters = scaled(20000);
    for (intptr_t i = 0; i < 16; i++)
      assert_true(goro_spawn(nb_worker, (void *)i) > 0);
    wait_all(25);
    assert_int_equal(atomic_load(&nb_sent),
                     atomic_load(&nb_recvd) + (long)goro_chan_len(nb));
    if (cap == 0)
      assert_int_equal(atomic_load(&nb_sent), 0);   /* nobody ever waits */
    goro_chan_free(nb);
  }
}


/* ---- foreign threads and goroutines on both ends ---- */

static goro_chan *mix;
static long mix_n;
static _Atomic int64_t mix_sum;

static void *thread_sender(void *arg) {
  long base = (long)(intptr_t)arg * mix_n;
  for (long i = 0; i < mix_n; i++) {
    int64_t v = base + i;
    assert_int_equal(goro_chan_send(mix, &v), GORO_OK);
  }
  return NULL;
}

static void task_sender(void *arg) {
  thread_sender(arg);
}

static void *thread_receiver(void *arg) {
  long n = (long)(intptr_t)arg;
  for (long i = 0; i < n; i++) {
    int64_t v;
    bool ok;
    assert_int_equal(goro_chan_recv(mix, &v, &ok), GORO_OK);
    assert_true(ok);
    atomic_fetch_add(&mix_sum, v);
  }
  return NULL;
}

static void task_receiver(void *arg) {
  thread_receiver(arg);
}

static void test_foreign_threads_mix(void **state) {
  watchdog(__func__, 60);
  for (size_t cap = 0; cap <= 8; cap += 8) {
    mix = goro_chan_new(sizeof(int64_t), cap);
    mix_n = scaled(20000);
    atomic_store(&mix_sum, 0);
    /* 2 thread senders + 2 task senders; 2 thread receivers + 2 task
    ** receivers + the main thread. */
    pthread_t ts[2], tr[2];
    long per_receiver = mix_n * 4 / 5;
    for (intptr_t i = 0; i < 2; i++) {
      assert_int_equal(pthread_create(&ts[i], NULL, thread_sender, (void *)i), 0);
      assert_true(goro_spawn(task_sender, (void *)(i + 2)) > 0);
      assert_int_equal(pthread_create(&tr[i], NULL, thread_receiver,
                                       (void *)(intptr_t)per_receiver), 0);
      assert_true(goro_spawn(task_receiver, (void *)(intptr_t)per_receiver) > 0);
    }
    thread_receiver((void *)(intptr_t)per_receiver);
    for (int i = 0; i < 2; i++) {
      pthread_join(ts[i], NULL);
      pthread_join(tr[i], NULL);
    }
    wait_all(30);
    int64_t n = mix_n * 4;
    assert_int_equal(atomic_load(&mix_sum), n * (n - 1) / 2);
    goro_chan_free(mix);
  }
}


/* ---- freeing a channel somebody waits on is safe ---- */

/*
** goro_chan_free drops the creator's reference; each waiter's sudog holds
** one of its own.  A select parked on `doomed` and `other`, woken through
** `other` after `doomed` was freed, still relocks `doomed` in its last
** pass: the channel must outlive that (ASan sees the use after free).
*/
static goro_chan *doomed, *other;
static _Atomic int doomed_done;

static void select_on_doomed(void) {
  int v = 0;
  goro_select_case cases[] = {
    { doomed, GORO_SELECT_RECV, &v, false },
    { other, GORO_SELECT_RECV, &v, false },
  };
  int chosen = -1;
  assert_int_equal(goro_select(cases, 2, true, &chosen), GORO_OK);
  assert_int_equal(chosen, 1);
  assert_int_equal(v, 7);
  atomic_fetch_add(&doomed_done, 1);
}

static void task_select_on_doomed(void *arg) {
  (void)arg;
  select_on_doomed();
}

static void *thread_select_on_doomed(void *arg) {
  (void)arg;
  select_on_doomed();
  return NULL;
}

static void free_with_waiter(bool foreign) {
  for (int round = 0; round < 50; round++) {
    doomed = goro_chan_new(sizeof(int), 0);
    other = goro_chan_new(sizeof(int), 0);
    atomic_store(&doomed_done, 0);
    pthread_t t;
    if (foreign)
      assert_int_equal(pthread_create(&t, NULL, thread_select_on_doomed, NULL), 0);
    else
      assert_true(goro_spawn(task_select_on_doomed, NULL) > 0);
    await_queued(doomed, true, 1);
    goro_chan_free(doomed);   /* the waiter's sudog keeps it */
    int v = 7;
    assert_int_equal(goro_chan_send(other, &v), GORO_OK);
    if (foreign)
      pthread_join(t, NULL);
    else
      goro_wait(-1);
    assert_int_equal(atomic_load(&doomed_done), 1);
    goro_chan_free(other);
  }
}

static void test_free_with_waiter_is_safe(void **state) {
  watchdog(__func__, 20);
  free_with_waiter(false);
}

static void test_free_with_foreign_waiter_is_safe(void **state) {
  watchdog(__func__, 20);
  free_with_waiter(true);
}



int main(void) {
  const struct CMUnitTest tests[] = {
    ON(1, test_buffered_basics),
    ON(1, test_zero_size_elements),
    ON(2, test_zero_size_elements),
    ON(1, test_full_buffer_parked_senders),
    ON(2, test_full_buffer_parked_senders),
    ON(1, test_big_elements),
    ON(2, test_big_elements),
    ON(1, test_null_arguments),
    ON(1, test_fifo_unbuffered),
    ON(2, test_fifo_unbuffered),
    ON(1, test_fifo_buffered),
    ON(2, test_fifo_buffered),
    ON(1, test_producers_consumers_random_close),
    ON(2, test_producers_consumers_random_close),
    ON(1, test_close_wakes_everyone),
    ON(2, test_close_wakes_everyone),
    ON(1, test_nonblocking_races),
    ON(2, test_nonblocking_races),
    ON(1, test_foreign_threads_mix),
    ON(2, test_foreign_threads_mix),
    ON(1, test_free_with_waiter_is_safe),
    ON(2, test_free_with_waiter_is_safe),
    ON(2, test_free_with_foreign_waiter_is_safe),
  };
  return goro_run_tests(tests);
}
