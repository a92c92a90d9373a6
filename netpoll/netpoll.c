/*
** netpoll.c — the poller: timers, fd readiness and DNS for goroutines, on
** a libuv loop that one thread of its own owns.
**
** libuv's loop is not thread-safe, so everything that touches it happens on
** the netpoll thread.  Other threads hand it requests (goro_pollop) through
** a lock-free stack and wake it with uv_async_send; it drains the stack in
** the order the requests were made.  A goroutine that waits:
**
**   1. fills a goro_pollop and parks; the park's unlock callback, run once
**      the goroutine is switched out, pushes the request.  So the poller can
**      never ready a goroutine that is still running;
**   2. the poller starts a uv_timer (a sleep, a deadline) or watches the fd
**      with the fd's uv_poll_t (one per fd, as libuv requires: reads and
**      writes share it);
**   3. when the wait ends the poller records the result in the op and
**      collects the goroutine; the goroutines collected in one loop
**      iteration are readied in one batch (Go's netpoll + injectglist).
**
** Pending waits are counted (goro_externalwait_add): while any exists, the
** deadlock check knows that something may still wake a goroutine.
*/
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include <uv.h>

#include "scheduler.h"

#define sched goro_sched

enum {
  REQ_SLEEP = 1, REQ_FDWAIT, REQ_FDCLOSE, REQ_TIMER_START, REQ_TIMER_STOP,
  REQ_TIMER_FREE, REQ_GAI
};

struct goro_fd {
  int fd;
  bool closing;                /* goro_fd_close seen (netpoll thread) */
  _Atomic bool closed;         /* goro_fd_close called (any thread) */
  _Atomic int refs;            /* the owner, and each wait submitted */
  bool handle_open;            /* uv_poll_t not yet closed */
  int watching;                /* events the uv_poll_t watches */
  goro_pollop *r, *w;          /* the waiting reader and writer */
  uv_poll_t poll;
};

struct goro_timer {
  struct goro_timer *next, *prev;   /* every timer object (timerslock) */
  _Atomic int state;           /* TIMER_* */
  int64_t when, period;
  goro_timer_fn fn;
  void *ud;
  _Atomic bool freeing;
  uv_timer_t handle;           /* netpoll thread only */
  bool handle_init;
};

/* FIRING: fn is running on the netpoll thread; stop waits it out, so that
** after goro_timer_stop or goro_timer_free returns fn runs no more. */
enum { TIMER_IDLE, TIMER_PENDING, TIMER_FIRING, TIMER_DONE };

/* A getaddrinfo request: its arguments, and the op of the waiter. */
typedef struct gai_req {
  uv_getaddrinfo_t req;
  goro_pollop *op;
  struct addrinfo **res;
} gai_req;

static uv_loop_t loop;
static uv_async_t wakeup;
static uv_check_t flush_check;
static uv_prepare_t flush_prepare;
static pthread_t thread;
static goro_mutex lifelock = GORO_MUTEX_INIT;
static _Atomic bool started;
static _Atomic bool stopping;
static _Atomic(goro_pollop *) requests;
static goro_mutex timerslock = GORO_MUTEX_INIT;
static goro_timer *alltimers;      /* timer objects not yet freed (timerslock) */

/* Goroutines readied during this loop iteration (netpoll thread only). */
static G **readyq;
static int nready, readycap;
static int64_t nreadywaits;        /* waits ended with them */

/* Waits submitted and not yet flushed as ended: the part of the runtime's
** external-wait count that a stop drops with the goroutines. */
static _Atomic int64_t nwaits;

/* uv_timer_t handles for sleeps and deadlines (netpoll thread): the free
** ones, and all of them (a stop frees those of dropped waits too). */
typedef struct timernode {
  uv_timer_t t;
  struct timernode *next;      /* freetimers */
  struct timernode *allnext;   /* alltimernodes */
} timernode;
static timernode *freetimers, *alltimernodes;

int64_t goro_now(void) {
  return goro_nanotime();
}


/*
** {======================================================
** Readying, in batches
** =======================================================
*/

static void flush_ready(void) {
  if (nready > 0) {
    goro_ready_batch(readyq, nready);
    nready = 0;
  }
  /* After the readying: checkdead must see the goroutines queued before
  ** it sees the waits gone. */
  if (nreadywaits > 0) {
    int64_t n = nreadywaits;
    nreadywaits = 0;
    atomic_fetch_sub(&nwaits, n);
    goro_externalwait_done(n);
  }
}

static void wait_done(goro_pollop *op, int result) {
  op->result = result;
  if (nready == readycap) {
    int cap = readycap ? 2 * readycap : 256;
    G **q = realloc(readyq, (size_t)cap * sizeof *q);
    if (q == NULL) {
      flush_ready();   /* no room: ready what we have, then this one */
      goro_ready(op->g);
      nreadywaits++;
      return;
    }
    readyq = q;
    readycap = cap;
  }
  readyq[nready++] = op->g;
  nreadywaits++;
}

static void on_flush_check(uv_check_t *h) { (void)h; flush_ready(); }
static void on_flush_prepare(uv_prepare_t *h) { (void)h; flush_ready(); }

/* }====================================================== */


/*
** {======================================================
** Timers of waits (sleeps, deadlines)
** =======================================================
*/

static uv_timer_t *timer_get(void) {
  timernode *n = freetimers;
  if (n) {
    freetimers = n->next;
    return &n->t;
  }
  n = malloc(sizeof *n);
  if (n == NULL)
    goro_throw("netpoll: out of memory");
  uv_timer_init(&loop, &n->t);
  n->allnext = alltimernodes;
  alltimernodes = n;
  return &n->t;
}

static void timer_put(uv_timer_t *t) {
  uv_timer_stop(t);
  timernode *n = (timernode *)t;
  n->next = freetimers;
  freetimers = n;
}

/* ms until `when`, rounded up: libuv's timers count milliseconds. */
static uint64_t ms_until(int64_t when) {
  int64_t d = when - goro_now();
  return d <= 0 ? 0 : (uint64_t)((d + 999999) / 1000000);
}

static void fd_update(goro_fd *f);
static void fd_free_if_done(goro_fd *f);

static void on_wait_timer(uv_timer_t *t) {
  goro_pollop *op = t->data;
  /* libuv counts from its cached loop time, in ms: never wake early. */
  if (goro_now() < op->when) {
    uint64_t ms = ms_until(op->when);
    uv_timer_start(t, on_wait_timer, ms ? ms : 1, 0);
    return;
  }
  timer_put(t);
  op->timer = NULL;
  if (op->kind == REQ_SLEEP) {
    wait_done(op, GORO_OK);
    return;
  }
  /* A deadline: the fd wait gives up. */
  goro_fd *f = op->fd;
  if (f->r == op) f->r = NULL;
  if (f->w == op) f->w = NULL;
  f->refs--;
  wait_done(op, GORO_ETIMEDOUT);
  fd_update(f);
  fd_free_if_done(f);
}

static void start_wait_timer(goro_pollop *op) {
  uv_timer_t *t = timer_get();
  t->data = op;
  op->timer = t;
  uv_timer_start(t, on_wait_timer, ms_until(op->when), 0);
}

/* }====================================================== */


/*
** {======================================================
** File descriptors
** =======================================================
*/

static void fd_free_if_done(goro_fd *f) {
  if (f->closing && atomic_load(&f->refs) == 0 && !f->handle_open) {
    close(f->fd);
    free(f);
  }
}

static void on_poll_closed(uv_handle_t *h) {
  goro_fd *f = h->data;
  f->handle_open = false;
  fd_free_if_done(f);
}

static void fd_wake(goro_fd *f, goro_pollop *op, int result) {
  if (op->timer) {
    timer_put(op->timer);
    op->timer = NULL;
  }
  f->refs--;
  wait_done(op, result);
}

static void on_poll(uv_poll_t *h, int status, int events) {
  goro_fd *f = h->data;
  /* An error (the fd was closed under us, or is in a bad state): wake
  ** both; their syscall will report what is wrong. */
  if (status < 0)
    events = UV_READABLE | UV_WRITABLE;
  if ((events & (UV_READABLE | UV_DISCONNECT)) && f->r) {
    goro_pollop *op = f->r;
    f->r = NULL;
    fd_wake(f, op, GORO_OK);
  }
  if ((events & (UV_WRITABLE | UV_DISCONNECT)) && f->w) {
    goro_pollop *op = f->w;
    f->w = NULL;
    fd_wake(f, op, GORO_OK);
  }
  fd_update(f);
}

/* Watch exactly what the waiters wait for. */
static void fd_update(goro_fd *f) {
  if (f->closing || !f->handle_open)
    return;
  int ev = (f->r ? UV_READABLE : 0) | (f->w ? UV_WRITABLE : 0);
  if (ev == f->watching)
    return;
  f->watching = ev;
  if (ev == 0)
    uv_poll_stop(&f->poll);
  else if (uv_poll_start(&f->poll, ev | UV_DISCONNECT, on_poll) != 0)
    on_poll(&f->poll, -1, 0);
}

static void fd_wait(goro_pollop *op) {
  goro_fd *f = op->fd;
  if (f->closing) {
    f->refs--;
    wait_done(op, GORO_ECLOSED);
    fd_free_if_done(f);
    return;
  }
  if (!f->handle_open) {
    if (uv_poll_init(&loop, &f->poll, f->fd) != 0) {
      f->refs--;
      wait_done(op, GORO_OK);   /* not pollable: let the syscall say why */
      return;
    }
    /* libuv sets it non-blocking again, and O_CLOEXEC is the caller's. */
    f->poll.data = f;
    f->handle_open = true;
    f->watching = 0;
  }
  goro_pollop **slot = op->events == GORO_READ ? &f->r : &f->w;
  if (*slot != NULL) {           /* a second reader (or writer) */
    f->refs--;
    wait_done(op, GORO_EINVAL);
    return;
  }
  *slot = op;
  if (op->when > 0)
    start_wait_timer(op);
  fd_update(f);
}

static void fd_close(goro_fd *f) {
  f->closing = true;
  if (f->r) { goro_pollop *op = f->r; f->r = NULL; fd_wake(f, op, GORO_ECLOSED); }
  if (f->w) { goro_pollop *op = f->w; f->w = NULL; fd_wake(f, op, GORO_ECLOSED); }
  f->refs--;   /* the owner's */
  if (f->handle_open) {
    uv_poll_stop(&f->poll);
    uv_close((uv_handle_t *)&f->poll, on_poll_closed);
  } else {
    fd_free_if_done(f);
  }
}

/* }====================================================== */


/*
** {======================================================
** Timer objects (Go's time.Timer, Ticker, After)
** =======================================================
*/

static void timer_object_free(goro_timer *t);

static void on_timer_object(uv_timer_t *h) {
  goro_timer *t = h->data;
  int pending = TIMER_PENDING;
  if (t->period == 0 && goro_now() < t->when) {   /* as in on_wait_timer */
    uint64_t ms = ms_until(t->when);
    uv_timer_start(h, on_timer_object, ms ? ms : 1, 0);
    return;
  }
  if (!atomic_compare_exchange_strong(&t->state, &pending, TIMER_FIRING))
    return;   /* stopped meanwhile */
  t->fn(t->ud, goro_now());
  if (t->period > 0) {
    atomic_store(&t->state, TIMER_PENDING);
  } else {
    atomic_store(&t->state, TIMER_DONE);
    goro_externalwait_done(1);
  }
}

static void timer_object_start(goro_timer *t) {
  if (t->freeing)
    return;
  if (!t->handle_init) {
    uv_timer_init(&loop, &t->handle);
    t->handle.data = t;
    t->handle_init = true;
  }
  if (atomic_load(&t->state) != TIMER_PENDING) {
    uv_timer_stop(&t->handle);
    return;
  }
  uint64_t period_ms = t->period > 0 ? (uint64_t)((t->period + 999999) / 1000000) : 0;
  if (t->period > 0 && period_ms == 0)
    period_ms = 1;
  uv_timer_start(&t->handle, on_timer_object, ms_until(t->when), period_ms);
}

static void on_timer_object_closed(uv_handle_t *h) {
  free(h->data);
}

static void timer_object_free(goro_timer *t) {
  goro_mutex_lock(&timerslock);
  if (t->prev) t->prev->next = t->next; else alltimers = t->next;
  if (t->next) t->next->prev = t->prev;
  goro_mutex_unlock(&timerslock);
  if (t->handle_init)
    uv_close((uv_handle_t *)&t->handle, on_timer_object_closed);
  else
    free(t);
}

/* }====================================================== */


/*
** {======================================================
** DNS
** =======================================================
*/

static void on_gai(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  gai_req *g = req->data;
  if (atomic_load(&stopping) && res != NULL) {
    /* A lookup that ends during a stop: every M is gone, so its goroutine
    ** will not run again to free the answer. */
    uv_freeaddrinfo(res);
    res = NULL;
    status = UV_ECANCELED;
  }
  *g->res = res;
  /* libuv reports UV_E*; give back getaddrinfo's EAI_* code. */
  int rc = 0;
  if (status == UV_EAI_NONAME) rc = EAI_NONAME;
  else if (status == UV_EAI_AGAIN) rc = EAI_AGAIN;
  else if (status == UV_EAI_FAIL) rc = EAI_FAIL;
  else if (status == UV_EAI_MEMORY) rc = EAI_MEMORY;
  else if (status == UV_EAI_FAMILY) rc = EAI_FAMILY;
  else if (status == UV_EAI_SERVICE) rc = EAI_SERVICE;
#ifdef EAI_NODATA
  else if (status == UV_EAI_NODATA) rc = EAI_NODATA;
#endif
  else if (status != 0) rc = EAI_FAIL;
  goro_pollop *op = g->op;
  free(g);
  wait_done(op, rc);
}

typedef struct gai_args {
  const char *node, *service;
  const struct addrinfo *hints;
  struct addrinfo **res;
} gai_args;

static void gai_start(goro_pollop *op) {
  gai_args *a = op->timer;   /* the op's spare pointer carries the args */
  op->timer = NULL;
  gai_req *g = malloc(sizeof *g);
  if (g == NULL) {
    wait_done(op, EAI_MEMORY);
    return;
  }
  g->req.data = g;
  g->op = op;
  g->res = a->res;
  int rc = uv_getaddrinfo(&loop, &g->req, on_gai, a->node, a->service, a->hints);
  if (rc != 0) {
    free(g);
    wait_done(op, EAI_FAIL);
  }
}

/* }====================================================== */


/*
** {======================================================
** The thread, and its request queue
** =======================================================
*/

static void handle(goro_pollop *op) {
  switch (op->kind) {
    case REQ_SLEEP:
      start_wait_timer(op);
      break;
    case REQ_FDWAIT: {
      fd_wait(op);
      break;
    }
    case REQ_FDCLOSE:
      fd_close(op->fd);
      free(op);
      break;
    case REQ_TIMER_START:
      timer_object_start((goro_timer *)op->timer);
      free(op);
      break;
    case REQ_TIMER_STOP: {
      goro_timer *t = op->timer;
      free(op);
      if (t->handle_init && atomic_load(&t->state) != TIMER_PENDING)
        uv_timer_stop(&t->handle);
      break;
    }
    case REQ_TIMER_FREE:
      timer_object_free((goro_timer *)op->timer);
      free(op);
      break;
    case REQ_GAI:
      gai_start(op);
      break;
    default:
      goro_throw("netpoll: bad request %d", op->kind);
  }
}

/*
** At a stop every handle closes, and the loop ends.  An fd outlives it:
** its owner may close it afterwards, or wait on it once the runtime has
** started again.  So its poll handle is marked closed (the next wait opens
** a new one) and its waits are forgotten, as their goroutines are dropped.
*/
static void on_close_any(uv_handle_t *h, void *arg) {
  (void)arg;
  if (uv_is_closing(h))
    return;
  if (h->type == UV_POLL) {
    goro_fd *f = h->data;
    if (f->r) { f->r = NULL; f->refs--; }
    if (f->w) { f->w = NULL; f->refs--; }
    uv_close(h, on_poll_closed);
  } else {
    uv_close(h, NULL);
  }
}

static void serve_requests(void) {
  /* The stack holds the newest first: reverse it to serve in order. */
  goro_pollop *list = atomic_exchange(&requests, NULL), *fifo = NULL;
  while (list) {
    goro_pollop *next = list->next;
    list->next = fifo;
    fifo = list;
    list = next;
  }
  while (fifo) {
    goro_pollop *next = fifo->next;
    handle(fifo);
    fifo = next;
  }
}

static void on_wakeup(uv_async_t *h) {
  (void)h;
  uv_update_time(&loop);   /* timers started below count from now */
  serve_requests();
  flush_ready();
  if (atomic_load(&stopping)) {
    /* A request pushed after the exchange above, but before the stop was
    ** asked for (a goro_fd_close just before goro_shutdown), is on the
    ** stack now: serve it, or its fd and memory would be lost. */
    while (atomic_load(&requests) != NULL)
      serve_requests();
    flush_ready();
    uv_walk(&loop, on_close_any, NULL);
  }
}

static void *netpoll_main(void *arg) {
  (void)arg;
  uv_run(&loop, UV_RUN_DEFAULT);
  return NULL;
}

static void submit(goro_pollop *op);

static int netpoll_start(void) {
  if (atomic_load_explicit(&started, memory_order_acquire))
    return GORO_OK;
  goro_mutex_lock(&lifelock);
  int rc = GORO_OK;
  if (!atomic_load(&started)) {
    atomic_store(&stopping, false);
    if (uv_loop_init(&loop) != 0) {
      rc = GORO_ENOMEM;
    } else {
      uv_async_init(&loop, &wakeup, on_wakeup);
      uv_check_init(&loop, &flush_check);
      uv_check_start(&flush_check, on_flush_check);
      uv_prepare_init(&loop, &flush_prepare);
      uv_prepare_start(&flush_prepare, on_flush_prepare);
      uv_unref((uv_handle_t *)&flush_check);
      uv_unref((uv_handle_t *)&flush_prepare);
      sigset_t old;
      goro_block_async_signals(&old);
      if (pthread_create(&thread, NULL, netpoll_main, NULL) != 0)
        rc = GORO_ENOMEM;
      pthread_sigmask(SIG_SETMASK, &old, NULL);
      if (rc == GORO_OK)
        atomic_store_explicit(&started, true, memory_order_release);
    }
    /* Timer objects outlive a stop of the poller (a restart of the
    ** runtime): those still pending go on on the new loop. */
    goro_mutex_lock(&timerslock);
    for (goro_timer *t = alltimers; rc == GORO_OK && t; t = t->next) {
      if (atomic_load(&t->state) != TIMER_PENDING)
        continue;
      goro_pollop *op = calloc(1, sizeof *op);
      if (op == NULL)
        break;
      op->kind = REQ_TIMER_START;
      op->timer = t;
      submit(op);
    }
    goro_mutex_unlock(&timerslock);
  }
  goro_mutex_unlock(&lifelock);
  return rc;
}

static void submit(goro_pollop *op) {
  /* A timer or fd request may come while the poller is stopped (between
  ** a runtime stop and its restart): start it first. */
  if (netpoll_start() != GORO_OK)
    goro_throw("netpoll: cannot start the poller");
  goro_pollop *head = atomic_load(&requests);
  do {
    op->next = head;
  } while (!atomic_compare_exchange_weak(&requests, &head, op));
  if (head == NULL)   /* the first since the last drain wakes the loop */
    uv_async_send(&wakeup);
}

/* Called by goro_shutdown once every M has exited, before any goroutine is
** freed: every request made so far is served, pending waits are dropped
** with their goroutines, and fds and timer objects outlive the stop (their
** owners close and free them, or use them when the runtime starts again). */
void goro_netpoll_stop(void) {
  goro_mutex_lock(&lifelock);
  if (atomic_load(&started)) {
    atomic_store(&stopping, true);
    uv_async_send(&wakeup);
    pthread_join(thread, NULL);
    uv_loop_close(&loop);
    goro_mutex_lock(&timerslock);
    for (goro_timer *t = alltimers; t; t = t->next)
      t->handle_init = false;   /* closed with the loop */
    goro_mutex_unlock(&timerslock);
    while (alltimernodes) {   /* closed with the loop */
      timernode *n = alltimernodes;
      alltimernodes = n->allnext;
      free(n);
    }
    freetimers = NULL;
    free(readyq);
    readyq = NULL;
    nready = readycap = 0;
    /* The waits dropped (and those ended after the last flush, a DNS
    ** lookup that finished during the stop) no longer count: else the
    ** deadlock check would stay blind after a restart.  Timer objects
    ** still pending keep theirs. */
    nreadywaits = 0;
    int64_t dropped = atomic_exchange(&nwaits, 0);
    if (dropped > 0)
      goro_externalwait_done(dropped);
    atomic_store(&requests, NULL);
    atomic_store(&started, false);
  }
  goro_mutex_unlock(&lifelock);
}

/* }====================================================== */


/*
** {======================================================
** The API: waits park the caller, then the unlock callback submits
** =======================================================
*/

static bool submit_parked(goro_g *g, void *arg) {
  goro_pollop *op = arg;
  op->g = g;
  atomic_fetch_add(&nwaits, 1);
  goro_externalwait_add(1);
  submit(op);
  return true;
}

static int wait_blocking(goro_pollop *op, const char *reason) {
  if (netpoll_start() != GORO_OK)
    return GORO_ENOMEM;
  goro_gopark(submit_parked, op, reason);
  return op->result;
}

static int wait_k(goro_pollop *op, const char *reason, goro_fn k, void *karg) {
  if (netpoll_start() != GORO_OK)
    return GORO_ENOMEM;
  goro_park_k(submit_parked, op, reason, k, karg);
}

int goro_sleep(int64_t ns) {
  if (ns <= 0)
    return GORO_OK;
  goro_pollop op = { .kind = REQ_SLEEP, .when = goro_now() + ns };
  return wait_blocking(&op, "sleep");
}

int goro_sleep_k(int64_t ns, goro_pollop *op, goro_fn k, void *karg) {
  if (ns <= 0)
    return GORO_OK;
  *op = (goro_pollop){ .kind = REQ_SLEEP, .when = goro_now() + ns };
  return wait_k(op, "sleep", k, karg);
}

int goro_pollop_finish(goro_pollop *op) {
  op->kind = 0;
  return op->result;
}

goro_fd *goro_fd_open(int fd) {
  goro_fd *f = calloc(1, sizeof *f);
  if (f == NULL)
    return NULL;
  int fl = fcntl(fd, F_GETFL);
  if (fl >= 0 && !(fl & O_NONBLOCK))
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  f->fd = fd;
  f->refs = 1;
  return f;
}

int goro_fd_fileno(goro_fd *f) {
  return f->fd;
}

/*
** A wait holds a reference, taken here and given back by the poller, so
** that f outlives the requests that name it.  As with Go's fds, closing
** an fd while another thread starts a wait on it is the caller's race to
** avoid (the Lua binding's token orders the two).
*/
static bool fd_prepare(goro_fd *f, int events, int64_t deadline, goro_pollop *op) {
  if (atomic_load(&f->closed))
    return false;
  atomic_fetch_add(&f->refs, 1);
  *op = (goro_pollop){ .kind = REQ_FDWAIT, .events = events, .when = deadline, .fd = f };
  return true;
}

int goro_fd_wait(goro_fd *f, int events, int64_t deadline) {
  goro_pollop op;
  if (!fd_prepare(f, events, deadline, &op))
    return GORO_ECLOSED;
  return wait_blocking(&op, "IO wait");
}

int goro_fd_wait_k(goro_fd *f, int events, int64_t deadline, goro_pollop *op,
                   goro_fn k, void *karg) {
  if (!fd_prepare(f, events, deadline, op))
    return GORO_ECLOSED;
  return wait_k(op, "IO wait", k, karg);
}

void goro_fd_close(goro_fd *f) {
  if (f == NULL || atomic_exchange(&f->closed, true))
    return;
  /* The close(2) itself waits for the poller (the fd number must not be
  ** reused while libuv still watches it), but a socket must stop now: a
  ** listener refuses connections and frees its port at once, a peer sees
  ** the end of the stream.  (Not a socket: ENOTSOCK, nothing done.) */
  shutdown(f->fd, SHUT_RDWR);
  if (!atomic_load(&started)) {   /* never waited on: nothing to tell */
    close(f->fd);
    free(f);
    return;
  }
  goro_pollop *op = calloc(1, sizeof *op);
  if (op == NULL)
    goro_throw("netpoll: out of memory");
  op->kind = REQ_FDCLOSE;
  op->fd = f;
  submit(op);
}

goro_timer *goro_timer_start(int64_t ns, int64_t period, goro_timer_fn fn, void *ud) {
  if (netpoll_start() != GORO_OK)
    return NULL;
  goro_timer *t = calloc(1, sizeof *t);
  goro_pollop *op = calloc(1, sizeof *op);
  if (t == NULL || op == NULL) {
    free(t);
    free(op);
    return NULL;
  }
  goro_mutex_lock(&timerslock);
  t->next = alltimers;
  if (alltimers) alltimers->prev = t;
  alltimers = t;
  goro_mutex_unlock(&timerslock);
  t->fn = fn;
  t->ud = ud;
  t->period = period > 0 ? period : 0;
  t->when = goro_now() + (ns > 0 ? ns : 0);
  atomic_store(&t->state, TIMER_PENDING);
  goro_externalwait_add(1);
  op->kind = REQ_TIMER_START;
  op->timer = t;
  submit(op);
  return t;
}

static bool timer_request(goro_timer *t, int kind) {
  goro_pollop *op = calloc(1, sizeof *op);
  if (op == NULL)
    return false;
  op->kind = kind;
  op->timer = t;
  submit(op);
  return true;
}

/* PENDING -> IDLE, waiting out a fn that runs right now. */
static bool timer_disarm(goro_timer *t, int to) {
  for (;;) {
    int s = atomic_load(&t->state);
    if (s == TIMER_FIRING) {
      goro_cpu_relax();
      continue;
    }
    if (s != TIMER_PENDING)
      return false;
    if (atomic_compare_exchange_weak(&t->state, &s, to)) {
      goro_externalwait_done(1);
      return true;
    }
  }
}

bool goro_timer_stop(goro_timer *t) {
  if (!timer_disarm(t, TIMER_IDLE))
    return false;
  timer_request(t, REQ_TIMER_STOP);
  return true;
}

bool goro_timer_reset(goro_timer *t, int64_t ns) {
  bool was = goro_timer_stop(t);
  t->when = goro_now() + (ns > 0 ? ns : 0);
  atomic_store(&t->state, TIMER_PENDING);
  goro_externalwait_add(1);
  timer_request(t, REQ_TIMER_START);
  return was;
}

/* Requests are served in order: one made earlier for t (a stop, a reset)
** is done before the free. */
void goro_timer_free(goro_timer *t) {
  if (t == NULL)
    return;
  timer_disarm(t, TIMER_DONE);
  t->freeing = true;
  if (!timer_request(t, REQ_TIMER_FREE))
    goro_throw("netpoll: out of memory");
}

int goro_getaddrinfo(const char *node, const char *service,
                     const struct addrinfo *hints, struct addrinfo **res) {
  gai_args a = { node, service, hints, res };
  goro_pollop op = { .kind = REQ_GAI, .timer = &a };
  int rc = wait_blocking(&op, "IO wait");
  return rc == GORO_ENOMEM ? EAI_MEMORY : rc;
}

/* }====================================================== */
