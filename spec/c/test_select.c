/*
** test_select.c — goro_select: fairness, duplicates, sharing, closes.
*/
#include "testutil.h"

#include <pthread.h>
#include <stdatomic.h>

#include "chan.h"   /* white box: to see who waits on a channel */


/* Sudogs queued on c (see test_chan.c). */
static int queued(goro_chan *c, bool recv) {
  goro_mutex_lock(&c->lock);
  int n = 0;
  for (sudog *sg = recv ? c->recvq.first : c->sendq.first; sg; sg = sg->next)
    n++;
  goro_mutex_unlock(&c->lock);
  return n;
}

static void await_queued(goro_chan *c, bool recv, int n) {
  while (queued(c, recv) < n)
    usleep(100);
}

static goro_select_case recv_case(goro_chan *c, void *elem) {
  return (goro_select_case){ .c = c, .dir = GORO_SELECT_RECV, .elem = elem };
}

static goro_select_case send_case(goro_chan *c, void *elem) {
  return (goro_select_case){ .c = c, .dir = GORO_SELECT_SEND, .elem = elem };
}


/* ---- default, disabled cases, bad input ---- */

static void test_default_and_disabled(void **state) {
  watchdog(__func__, 10);
  goro_chan *a = goro_chan_new(sizeof(int), 1);
  int v = 0, chosen;
  goro_select_case cs[3] = { recv_case(a, &v), { .c = NULL }, send_case(a, &v) };
  /* Empty: only the send can go. */
  v = 11;
  assert_int_equal(goro_select(cs, 3, false, &chosen), GORO_OK);
  assert_int_equal(chosen, 2);
  /* Full: only the receive can go. */
  v = 0;
  assert_int_equal(goro_select(cs, 3, false, &chosen), GORO_OK);
  assert_int_equal(chosen, 0);
  assert_int_equal(v, 11);
  assert_true(cs[0].ok);
  /* Only disabled cases, non-blocking: default. */
  goro_select_case none[2] = { { .c = NULL }, { .c = NULL } };
  assert_int_equal(goro_select(none, 2, false, &chosen), GORO_EAGAIN);
  assert_int_equal(chosen, -1);
  assert_int_equal(goro_select(NULL, 0, false, &chosen), GORO_EAGAIN);
  /* select {} on a foreign thread can never end. */
  assert_int_equal(goro_select(none, 2, true, &chosen), GORO_EDEADLK);
  goro_select_case bad = { .c = a, .dir = 7 };
  assert_int_equal(goro_select(&bad, 1, true, &chosen), GORO_EINVAL);
  /* Sending on a closed channel is an error, receiving gives ok = false. */
  assert_int_equal(goro_chan_close(a), GORO_OK);
  goro_select_case sc = send_case(a, &v);
  assert_int_equal(goro_select(&sc, 1, true, &chosen), GORO_ECLOSED);
  assert_int_equal(chosen, 0);
  goro_select_case rc = recv_case(a, &v);
  v = 3;
  assert_int_equal(goro_select(&rc, 1, true, &chosen), GORO_OK);
  assert_false(rc.ok);
  assert_int_equal(v, 0);
  goro_chan_free(a);
}


/* ---- fairness among ready cases ---- */

static void test_fairness_chi_square(void **state) {
  watchdog(__func__, 60);
  enum { K = 4 };
  long n = scaled(100000);
  goro_chan *ch[K];
  goro_select_case cs[K];
  int v;
  for (int i = 0; i < K; i++) {
    ch[i] = goro_chan_new(sizeof(int), 1);
    cs[i] = recv_case(ch[i], &v);
    assert_int_equal(goro_chan_send(ch[i], &i), GORO_OK);
  }
  long count[K] = { 0 };
  for (long s = 0; s < n; s++) {
    int chosen;
    assert_int_equal(goro_select(cs, K, true, &chosen), GORO_OK);
    assert_int_equal(v, chosen);
    count[chosen]++;
    assert_int_equal(goro_chan_send(ch[chosen], &chosen), GORO_OK);  /* ready again */
  }
  /* Pearson's chi-square with K-1 = 3 degrees of freedom.  P(X > 35) is
  ** about 1.2e-7 for a fair choice: a failure means a biased select. */
  double expect = (double)n / K, chi2 = 0;
  for (int i = 0; i < K; i++)
    chi2 += (count[i] - expect) * (count[i] - expect) / expect;
  if (chi2 > 35.0)
    fail_msg("chi-square %.1f: counts %ld %ld %ld %ld", chi2,
             count[0], count[1], count[2], count[3]);
  for (int i = 0; i < K; i++)
    goro_chan_free(ch[i]);
}


/* ---- the same channel twice in one select ---- */

static goro_chan *dup_c;

static void dup_sender(void *arg) {
  int v = (int)(intptr_t)arg;
  assert_int_equal(goro_chan_send(dup_c, &v), GORO_OK);
}

static void dup_receiver(void *arg) {
  int v;
  bool ok;
  assert_int_equal(goro_chan_recv(dup_c, &v, &ok), GORO_OK);
  assert_true(ok);
  assert_int_equal(v, 77);
}

static void test_same_channel_twice(void **state) {
  watchdog(__func__, 20);
  dup_c = goro_chan_new(sizeof(int), 0);
  int a = -1, b = -1, chosen;
  long hits[2] = { 0 };
  for (int i = 0; i < 200; i++) {
    /* Two receive cases on one channel, blocking until a sender comes. */
    goro_select_case cs[2] = { recv_case(dup_c, &a), recv_case(dup_c, &b) };
    assert_true(goro_spawn(dup_sender, (void *)(intptr_t)i) > 0);
    assert_int_equal(goro_select(cs, 2, true, &chosen), GORO_OK);
    assert_true(chosen == 0 || chosen == 1);
    assert_int_equal(chosen == 0 ? a : b, i);
    hits[chosen]++;
    wait_all(5);
  }
  assert_true(hits[0] > 0 && hits[1] > 0);
  /* A send and a receive on the same unbuffered channel do not meet each
  ** other: the select waits for a real partner. */
  for (int i = 0; i < 100; i++) {
    int out = 77, in = 0;
    goro_select_case cs[2] = { send_case(dup_c, &out), recv_case(dup_c, &in) };
    assert_true(goro_spawn(dup_receiver, NULL) > 0);
    assert_int_equal(goro_select(cs, 2, true, &chosen), GORO_OK);
    assert_int_equal(chosen, 0);
    wait_all(5);
  }
  goro_chan_free(dup_c);
}


/* ---- two selects waiting on the same channel ---- */

static goro_chan *shared, *other1, *other2;
static _Atomic int shared_got;

static void shared_selector(void *arg) {
  goro_chan *mine = arg;
  int v = 0, chosen;
  goro_select_case cs[2] = { recv_case(shared, &v), recv_case(mine, &v) };
  assert_int_equal(goro_select(cs, 2, true, &chosen), GORO_OK);
  if (chosen == 0) {
    assert_true(cs[0].ok);
    atomic_fetch_add(&shared_got, v);
  }
}

static void test_two_selects_one_channel(void **state) {
  watchdog(__func__, 30);
  for (int round = 0; round < 200; round++) {
    shared = goro_chan_new(sizeof(int), 0);
    other1 = goro_chan_new(sizeof(int), 0);
    other2 = goro_chan_new(sizeof(int), 0);
    atomic_store(&shared_got, 0);
    assert_true(goro_spawn(shared_selector, other1) > 0);
    assert_true(goro_spawn(shared_selector, other2) > 0);
    /* Each send on the shared channel wakes exactly one selector. */
    int v = 1;
    assert_int_equal(goro_chan_send(shared, &v), GORO_OK);
    v = 2;
    assert_int_equal(goro_chan_send(shared, &v), GORO_OK);
    wait_all(5);
    assert_int_equal(atomic_load(&shared_got), 3);
    /* Nobody is left on any queue. */
    assert_int_equal(goro_chan_trysend(shared, &v), GORO_EAGAIN);
    assert_int_equal(goro_chan_trysend(other1, &v), GORO_EAGAIN);
    goro_chan_free(shared);
    goro_chan_free(other1);
    goro_chan_free(other2);
  }
}


/* ---- a blocked select send woken by close ---- */

static goro_chan *sclosed;

static void select_sender(void *arg) {
  int v = 1, chosen;
  goro_select_case cs[1] = { send_case(sclosed, &v) };
  assert_int_equal(goro_select(cs, 1, true, &chosen), GORO_ECLOSED);
  assert_int_equal(chosen, 0);
  atomic_fetch_add((_Atomic int *)arg, 1);
}

static void test_select_send_woken_by_close(void **state) {
  watchdog(__func__, 20);
  _Atomic int failed = 0;
  sclosed = goro_chan_new(sizeof(int), 0);
  for (int i = 0; i < 10; i++)
    assert_true(goro_spawn(select_sender, (void *)&failed) > 0);
  await_queued(sclosed, false, 10);   /* all parked */
  assert_int_equal(goro_chan_close(sclosed), GORO_OK);
  wait_all(10);
  assert_int_equal(atomic_load(&failed), 10);
  goro_chan_free(sclosed);
}


/* ---- a blocked select receive woken by close ---- */

static goro_chan *rclosed_a, *rclosed_b;

static void select_receiver(void *arg) {
  int64_t va = 11, vb = 22;
  int chosen;
  goro_select_case cs[2] = { recv_case(rclosed_a, &va), recv_case(rclosed_b, &vb) };
  cs[0].ok = cs[1].ok = true;
  assert_int_equal(goro_select(cs, 2, true, &chosen), GORO_OK);
  /* Only b is closed: its case wins, zeroed, with ok = false. */
  assert_int_equal(chosen, 1);
  assert_false(cs[1].ok);
  assert_int_equal(vb, 0);
  assert_int_equal(va, 11);
  atomic_fetch_add((_Atomic int *)arg, 1);
}

static void test_select_recv_woken_by_close(void **state) {
  watchdog(__func__, 20);
  _Atomic int woken = 0;
  for (int round = 0; round < 20; round++) {
    rclosed_a = goro_chan_new(sizeof(int64_t), round % 2);
    rclosed_b = goro_chan_new(sizeof(int64_t), 0);
    for (int i = 0; i < 10; i++)
      assert_true(goro_spawn(select_receiver, (void *)&woken) > 0);
    if (round % 4 < 2)
      await_queued(rclosed_b, true, 10);   /* else race the parks */
    assert_int_equal(goro_chan_close(rclosed_b), GORO_OK);
    wait_all(10);
    /* The losing cases left nothing behind on a. */
    assert_int_equal(queued(rclosed_a, true), 0);
    goro_chan_free(rclosed_a);
    goro_chan_free(rclosed_b);
  }
  assert_int_equal(atomic_load(&woken), 200);
}


/* ---- more cases than fit the stack buffer ---- */

static goro_chan *many_ch[200];

static void many_sender(void *arg) {
  int64_t v = (int64_t)(intptr_t)arg;
  assert_int_equal(goro_chan_send(many_ch[v], &v), GORO_OK);
}

static void test_many_cases(void **state) {
  watchdog(__func__, 30);
  enum { N = 200 };
  int64_t vals[N];
  goro_select_case cs[N];
  for (int i = 0; i < N; i++) {
    many_ch[i] = goro_chan_new(sizeof(int64_t), (size_t)(i % 2));
    cs[i] = recv_case(many_ch[i], &vals[i]);
  }
  srand(4242);
  for (int round = 0; round < 300; round++) {
    int pick = rand() % N, chosen;
    if (round % 2 && pick % 2) {
      /* A value buffered before the select: pass 1 finds the one ready
      ** case among 200. */
      int64_t v = pick;
      assert_int_equal(goro_chan_trysend(many_ch[pick], &v), GORO_OK);
    } else {
      /* A sender that races the select: it finds it parked on all 200
      ** channels, or is found parked (or buffered) by pass 1. */
      assert_true(goro_spawn(many_sender, (void *)(intptr_t)pick) > 0);
    }
    assert_int_equal(goro_select(cs, N, true, &chosen), GORO_OK);
    assert_int_equal(chosen, pick);
    assert_int_equal(vals[pick], pick);
    wait_all(5);
    for (int i = 0; i < N; i += 37)
      assert_int_equal(queued(many_ch[i], true), 0);
  }
  /* Non-blocking, nothing ready: default. */
  int chosen;
  assert_int_equal(goro_select(cs, N, false, &chosen), GORO_EAGAIN);
  assert_int_equal(chosen, -1);
  for (int i = 0; i < N; i++)
    goro_chan_free(many_ch[i]);
}


/* ---- select {} from a goroutine parks for good ---- */

static _Atomic bool forever_returned;

static void select_forever(void *arg) {
  (void)arg;
  goro_select_case none[3] = { { .c = NULL }, { .c = NULL }, { .c = NULL } };
  int chosen;
  goro_select(none, 3, true, &chosen);
  atomic_store(&forever_returned, true);
}

static void test_select_forever(void **state) {
  watchdog(__func__, 10);
  atomic_store(&forever_returned, false);
  assert_true(goro_spawn(select_forever, NULL) > 0);
  /* It neither returns nor finishes; shutdown discards it. */
  assert_int_equal(goro_wait(100 * 1000000LL), GORO_ETIMEDOUT);
  assert_false(atomic_load(&forever_returned));
  assert_int_equal(goro_numgoroutine(), 1);
}


/* ---- non-blocking selects racing with blocking ones ---- */

static goro_chan *nbs_a, *nbs_b, *nbs_quit;
static long nbs_iters;
static _Atomic int64_t nbs_sent_sum, nbs_recv_sum;
static _Atomic long nbs_sent, nbs_recvd;

static void nbs_worker(void *arg) {
  long id = (long)(intptr_t)arg;
  int64_t in;
  for (long i = 0; i < nbs_iters; i++) {
    int64_t v = id * 10000000 + i + 1;
    goro_select_case cs[4] = {
      send_case(nbs_a, &v), recv_case(nbs_a, &in),
      send_case(nbs_b, &v), recv_case(nbs_b, &in),
    };
    /* A random subset of the cases, the rest disabled. */
    unsigned mask = (unsigned)(i * 7 + id) % 15 + 1;
    for (int k = 0; k < 4; k++)
      if (!(mask & (1u << k))) cs[k].c = NULL;
    int chosen;
    int rc = goro_select(cs, 4, false, &chosen);
    if (rc == GORO_EAGAIN) {
      assert_int_equal(chosen, -1);
    } else {
      assert_int_equal(rc, GORO_OK);
      assert_true(mask & (1u << chosen));
      if (cs[chosen].dir == GORO_SELECT_SEND) {
        atomic_fetch_add(&nbs_sent_sum, v);
        atomic_fetch_add(&nbs_sent, 1);
      } else {
        assert_true(cs[chosen].ok);
        atomic_fetch_add(&nbs_recv_sum, in);
        atomic_fetch_add(&nbs_recvd, 1);
      }
    }
    if (i % 8 == 0) goro_yield();
  }
}

/* Blocking receivers and senders, so that non-blocking ones find partners
** on the unbuffered channel too. */
static void nbs_blocking(void *arg) {
  long id = (long)(intptr_t)arg;
  int64_t in, q;
  for (long i = 0;; i++) {
    int64_t v = -(id * 10000000 + i + 1);   /* negative: told apart */
    goro_select_case cs[3] = {
      recv_case(nbs_a, &in), send_case(nbs_b, &v), recv_case(nbs_quit, &q),
    };
    if (id % 2) cs[1].c = NULL;   /* odd ones only receive */
    int chosen;
    assert_int_equal(goro_select(cs, 3, true, &chosen), GORO_OK);
    if (chosen == 2)
      return;
    if (chosen == 1) {
      atomic_fetch_add(&nbs_sent_sum, v);
      atomic_fetch_add(&nbs_sent, 1);
    } else {
      atomic_fetch_add(&nbs_recv_sum, in);
      atomic_fetch_add(&nbs_recvd, 1);
    }
  }
}

static void test_nonblocking_select_races(void **state) {
  watchdog(__func__, 60);
  nbs_iters = scaled(20000);
  nbs_a = goro_chan_new(sizeof(int64_t), 0);
  nbs_b = goro_chan_new(sizeof(int64_t), 3);
  nbs_quit = goro_chan_new(0, 0);
  atomic_store(&nbs_sent_sum, 0);
  atomic_store(&nbs_recv_sum, 0);
  atomic_store(&nbs_sent, 0);
  atomic_store(&nbs_recvd, 0);
  for (intptr_t i = 0; i < 4; i++)
    assert_true(goro_spawn(nbs_blocking, (void *)i) > 0);
  for (intptr_t i = 0; i < 12; i++)
    assert_true(goro_spawn(nbs_worker, (void *)i) > 0);
  while (goro_numgoroutine() > 4)
    usleep(1000);
  assert_int_equal(goro_chan_close(nbs_quit), GORO_OK);
  wait_all(30);
  /* Drain what the buffer still holds. */
  int64_t v;
  bool ok;
  while (goro_chan_tryrecv(nbs_b, &v, &ok) == GORO_OK) {
    atomic_fetch_add(&nbs_recv_sum, v);
    atomic_fetch_add(&nbs_recvd, 1);
  }
  assert_int_equal(atomic_load(&nbs_sent), atomic_load(&nbs_recvd));
  assert_int_equal(atomic_load(&nbs_sent_sum), atomic_load(&nbs_recv_sum));
  assert_true(atomic_load(&nbs_sent) > 0);
  goro_chan_free(nbs_a);
  goro_chan_free(nbs_b);
  goro_chan_free(nbs_quit);
}


/* ---- select storm: many selects, random closes, nothing lost ---- */

enum { STORM_CH = 4, STORM_SEND = 6, STORM_RECV = 6 };
static goro_chan *storm[STORM_CH];
static goro_chan *storm_quit;
static long storm_each;
static _Atomic int64_t storm_sent_sum, storm_recv_sum;
static _Atomic long storm_sent, storm_recvd;

static void storm_sender(void *arg) {
  long id = (long)(intptr_t)arg;
  for (long i = 0; i < storm_each; i++) {
    int64_t v = id * storm_each + i + 1;
    /* Send on any of the channels, or give up when quit closes. */
    goro_select_case cs[STORM_CH + 1];
    for (int k = 0; k < STORM_CH; k++)
      cs[k] = send_case(storm[k], &v);
    int64_t q;
    cs[STORM_CH] = recv_case(storm_quit, &q);
    int chosen;
    int rc = goro_select(cs, STORM_CH + 1, true, &chosen);
    if (rc == GORO_ECLOSED || chosen == STORM_CH)
      return;   /* a channel (or quit) was closed: this value was not sent */
    assert_int_equal(rc, GORO_OK);
    atomic_fetch_add(&storm_sent_sum, v);
    atomic_fetch_add(&storm_sent, 1);
  }
}

static void storm_receiver(void *arg) {
  (void)arg;
  int64_t v[STORM_CH];
  goro_select_case cs[STORM_CH];
  for (int k = 0; k < STORM_CH; k++)
    cs[k] = recv_case(storm[k], &v[k]);
  int open = STORM_CH;
  while (open > 0) {
    int chosen;
    assert_int_equal(goro_select(cs, STORM_CH, true, &chosen), GORO_OK);
    if (!cs[chosen].ok) {
      cs[chosen].c = NULL;   /* closed and drained: disable the case */
      open--;
      continue;
    }
    atomic_fetch_add(&storm_recv_sum, v[chosen]);
    atomic_fetch_add(&storm_recvd, 1);
  }
}

static void storm_closer(void *arg) {
  long after = (long)(intptr_t)arg;
  while (atomic_load(&storm_recvd) < after)
    goro_yield();
  assert_int_equal(goro_chan_close(storm_quit), GORO_OK);
}

static void test_select_storm_random_closes(void **state) {
  watchdog(__func__, 90);
  srand(777);
  storm_each = scaled(3000);
  for (int round = 0; round < 10; round++) {
    for (int k = 0; k < STORM_CH; k++)
      storm[k] = goro_chan_new(sizeof(int64_t), (size_t)(k % 2) * 4);
    storm_quit = goro_chan_new(sizeof(int64_t), 0);
    atomic_store(&storm_sent_sum, 0);
    atomic_store(&storm_recv_sum, 0);
    atomic_store(&storm_sent, 0);
    atomic_store(&storm_recvd, 0);
    for (intptr_t i = 0; i < STORM_RECV; i++)
      assert_true(goro_spawn(storm_receiver, NULL) > 0);
    for (intptr_t i = 0; i < STORM_SEND; i++)
      assert_true(goro_spawn(storm_sender, (void *)i) > 0);
    long total = storm_each * STORM_SEND;
    assert_true(goro_spawn(storm_closer,
                           (void *)(intptr_t)(rand() % total)) > 0);
    /* Once every sender is done, close the data channels so the
    ** receivers drain and finish. */
    while (goro_numgoroutine() > STORM_RECV) usleep(1000);
    /* Some senders may still be parked only if quit closed: all are gone
    ** when the count reaches the receivers alone. */
    for (int k = 0; k < STORM_CH; k++)
      assert_int_equal(goro_chan_close(storm[k]), GORO_OK);
    wait_all(60);
    assert_int_equal(atomic_load(&storm_sent), atomic_load(&storm_recvd));
    assert_int_equal(atomic_load(&storm_sent_sum), atomic_load(&storm_recv_sum));
    for (int k = 0; k < STORM_CH; k++)
      goro_chan_free(storm[k]);
    goro_chan_free(storm_quit);
  }
}


/* ---- selects from foreign threads and goroutines together ---- */

static goro_chan *fx_a, *fx_b;
static long fx_n;
static _Atomic long fx_got;

static void *fx_thread_select(void *arg) {
  (void)arg;
  int64_t va, vb;
  goro_select_case cs[2] = { recv_case(fx_a, &va), recv_case(fx_b, &vb) };
  for (long i = 0; i < fx_n; i++) {
    int chosen;
    assert_int_equal(goro_select(cs, 2, true, &chosen), GORO_OK);
    assert_true(cs[chosen].ok);
    atomic_fetch_add(&fx_got, 1);
  }
  return NULL;
}

static void fx_task_select(void *arg) {
  fx_thread_select(arg);
}

static void fx_task_send(void *arg) {
  goro_chan *c = arg;
  for (long i = 0; i < fx_n; i++) {
    int64_t v = i;
    assert_int_equal(goro_chan_send(c, &v), GORO_OK);
  }
}

static void test_foreign_select(void **state) {
  watchdog(__func__, 60);
  fx_a = goro_chan_new(sizeof(int64_t), 0);
  fx_b = goro_chan_new(sizeof(int64_t), 2);
  fx_n = scaled(10000);
  atomic_store(&fx_got, 0);
  pthread_t t;
  assert_int_equal(pthread_create(&t, NULL, fx_thread_select, NULL), 0);
  assert_true(goro_spawn(fx_task_select, NULL) > 0);
  assert_true(goro_spawn(fx_task_send, fx_a) > 0);
  fx_task_send(fx_b);   /* the main thread sends too */
  pthread_join(t, NULL);
  wait_all(30);
  assert_int_equal(atomic_load(&fx_got), 2 * fx_n);
  goro_chan_free(fx_a);
  goro_chan_free(fx_b);
}



/* The lock-free hint agrees with what a select could do at rest. */
static void test_maybe_ready_hint(void **state) {
  watchdog(__func__, 10);
  goro_chan *u = goro_chan_new(sizeof(int), 0), *b = goro_chan_new(sizeof(int), 1);
  int v = 7;
  goro_select_case none[] = { { u, GORO_SELECT_RECV, &v, false },
                              { u, GORO_SELECT_SEND, &v, false },
                              { b, GORO_SELECT_RECV, &v, false },
                              { NULL, GORO_SELECT_RECV, &v, false } };
  assert_false(goro_select_maybe_ready(none, 4));
  goro_select_case room[] = { { b, GORO_SELECT_SEND, &v, false } };
  assert_true(goro_select_maybe_ready(room, 1));      /* b has room */
  assert_int_equal(goro_chan_send(b, &v), GORO_OK);
  assert_false(goro_select_maybe_ready(room, 1));     /* b is full */
  assert_true(goro_select_maybe_ready(&none[2], 1));  /* b holds a value */
  assert_int_equal(goro_chan_close(u), GORO_OK);
  assert_true(goro_select_maybe_ready(none, 1));      /* u is closed */
  goro_chan_free(u);
  goro_chan_free(b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_maybe_ready_hint),
    ON(1, test_default_and_disabled),
    ON(1, test_fairness_chi_square),
    ON(2, test_fairness_chi_square),
    ON(1, test_same_channel_twice),
    ON(2, test_same_channel_twice),
    ON(1, test_two_selects_one_channel),
    ON(2, test_two_selects_one_channel),
    ON(1, test_select_send_woken_by_close),
    ON(2, test_select_send_woken_by_close),
    ON(1, test_select_recv_woken_by_close),
    ON(2, test_select_recv_woken_by_close),
    ON(1, test_many_cases),
    ON(2, test_many_cases),
    ON(1, test_select_forever),
    ON(1, test_nonblocking_select_races),
    ON(2, test_nonblocking_select_races),
    ON(1, test_select_storm_random_closes),
    ON(2, test_select_storm_random_closes),
    ON(1, test_foreign_select),
    ON(2, test_foreign_select),
  };
  return goro_run_tests(tests);
}
