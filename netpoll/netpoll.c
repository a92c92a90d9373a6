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
**
** Timer objects (goro_timer_*) are shared between their owner, on any
** thread, and the netpoll thread.  The protocol:
**
**   state     atomic: a generation (each reset makes a new one) and a kind,
**             IDLE, PENDING, FIRING or DONE.  The owner disarms a timer
**             (PENDING -> IDLE, DONE) and arms it (-> PENDING, next
**             generation); the netpoll thread fires it (PENDING -> FIRING
**             -> PENDING or DONE), and only for the generation its handle
**             was started for, so a handle started before a reset can never
**             fire for the reset timer.  Nobody changes a FIRING state but
**             the netpoll thread: a disarm waits it out, so after stop and
**             free return, fn runs no more.
**   when      the deadline: owned by the netpoll thread.  The owner does
**             not write it; a start or a reset sends the new deadline in
**             its request, with its generation, and the netpoll thread
**             takes it only if that generation is still the timer's.
**   period    set at the start, read-only afterwards.
**
** Timer objects outlive a stop of the poller (a runtime restart): the
** loop is closed with their handles, and goro_netpoll_restart (at
** goro_init) starts the poller again when any is pending, so that it fires
** on time even if nothing else asks the poller for anything.
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
  REQ_TIMER_FREE, REQ_GAI, REQ_CANCEL
};

/*
** goro_pollop.cancel: an interrupted foreign waiter (goro_interrupt) asks
** for its wait back with a REQ_CANCEL request that lives in its frame.
** The waiter leaves the park only once readied, and only the cancel
** request's handling readies it after a cancel was asked for, so the op
** and the request stay valid until the poller is done with both.
*/
enum {
  CANCEL_NONE,        /* no cancel asked for */
  CANCEL_ASKED,       /* asked for; the wait had not ended */
  CANCEL_ENDED,       /* the wait ended normally: readied */
  CANCEL_DEFERRED     /* it ended after the ask: the cancel readies it */
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
  _Atomic uint64_t state;      /* generation << 2 | TIMER_* */
  int64_t period;              /* read-only after the start */
  goro_timer_fn fn;
  void *ud;
  _Atomic bool freeing;
  /* netpoll thread only (and goro_netpoll_stop, once it has joined it) */
  int64_t when;
  uint64_t armed;              /* the generation the handle runs for */
  uv_timer_t handle;
  bool handle_init;
};

/* FIRING: fn is running on the netpoll thread; stop waits it out, so that
** after goro_timer_stop or goro_timer_free returns fn runs no more. */
enum { TIMER_IDLE, TIMER_PENDING, TIMER_FIRING, TIMER_DONE };

#define TIMER_KIND(s) ((int)((s) & 3))
#define TIMER_GEN(s) ((s) >> 2)
#define TIMER_STATE(gen, kind) ((gen) << 2 | (uint64_t)(kind))

/* A request about a timer object: which generation it is for, and (start)
** its deadline, or WHEN_KEEP for the one it had (a restart). */
typedef struct timer_req {
  goro_pollop op;              /* first: handle() frees the request */
  uint64_t gen;
} timer_req;

#define WHEN_KEEP INT64_MIN

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

/* Now + ns, saturated: a duration of centuries is as good as never, and
** must not wrap to the past. */
static int64_t deadline_after(int64_t ns) {
  int64_t now = goro_now();
  if (ns <= 0)
    return now;
  return ns > INT64_MAX - now ? INT64_MAX : now + ns;
}

/* ns in ms, rounded up, without overflow. */
static uint64_t ns_to_ms(int64_t ns) {
  return ns <= 0 ? 0 : (uint64_t)(ns / 1000000 + (ns % 1000000 != 0));
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

static void ready_op(goro_pollop *op);

static bool cancel_cas(goro_pollop *op, int from, int to) {
  return __atomic_compare_exchange_n(&op->cancel, &from, to, false,
                                     __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
}

static void wait_done(goro_pollop *op, int result) {
  op->result = result;
  if (!cancel_cas(op, CANCEL_NONE, CANCEL_ENDED)) {
    __atomic_store_n(&op->cancel, CANCEL_DEFERRED, __ATOMIC_SEQ_CST);
    return;   /* the cancel readies it */
  }
  ready_op(op);
}

static void ready_op(goro_pollop *op) {
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
  int64_t now = goro_now();
  return when <= now ? 0 : ns_to_ms(when - now);
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

static void on_timer_object(uv_timer_t *h) {
  goro_timer *t = h->data;
  uint64_t s = atomic_load(&t->state);
  if (TIMER_KIND(s) != TIMER_PENDING || TIMER_GEN(s) != t->armed) {
    /* Stopped, or reset: a request on its way starts it again if needed. */
    uv_timer_stop(h);
    return;
  }
  if (t->period == 0 && goro_now() < t->when) {   /* as in on_wait_timer */
    uint64_t ms = ms_until(t->when);
    uv_timer_start(h, on_timer_object, ms ? ms : 1, 0);
    return;
  }
  uint64_t gen = TIMER_GEN(s);
  if (!atomic_compare_exchange_strong(&t->state, &s, TIMER_STATE(gen, TIMER_FIRING)))
    return;   /* stopped or reset meanwhile */
  t->fn(t->ud, goro_now());
  if (t->period > 0) {
    atomic_store(&t->state, TIMER_STATE(gen, TIMER_PENDING));
  } else {
    atomic_store(&t->state, TIMER_STATE(gen, TIMER_DONE));
    goro_externalwait_done(1);
  }
}

/* Start (or stop) t's handle as generation `gen` wants it, with deadline
** `when` (WHEN_KEEP: t->when). */
static void timer_object_start(goro_timer *t, uint64_t gen, int64_t when) {
  if (atomic_load(&t->freeing))
    return;
  if (!t->handle_init) {
    uv_timer_init(&loop, &t->handle);
    t->handle.data = t;
    t->handle_init = true;
  }
  uint64_t s = atomic_load(&t->state);
  if (TIMER_GEN(s) != gen)
    return;   /* reset since: that request follows this one */
  if (TIMER_KIND(s) != TIMER_PENDING) {
    uv_timer_stop(&t->handle);
    return;
  }
  if (when != WHEN_KEEP)
    t->when = when;
  t->armed = gen;
  uint64_t period_ms = ns_to_ms(t->period);
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

/* A REQ_CANCEL: end the target's wait now if it has not ended. */
static void cancel_wait(goro_pollop *req) {
  goro_pollop *op = req->target;
  if (__atomic_load_n(&op->cancel, __ATOMIC_SEQ_CST) == CANCEL_DEFERRED) {
    ready_op(op);
    return;
  }
  if (op->timer) {
    timer_put(op->timer);
    op->timer = NULL;
  }
  if (op->kind == REQ_FDWAIT) {
    goro_fd *f = op->fd;
    if (f->r == op) f->r = NULL;
    if (f->w == op) f->w = NULL;
    f->refs--;
    fd_update(f);
    fd_free_if_done(f);
  }
  op->result = GORO_EINTR;
  __atomic_store_n(&op->cancel, CANCEL_ENDED, __ATOMIC_SEQ_CST);
  ready_op(op);
}

static void handle(goro_pollop *op) {
  switch (op->kind) {
    case REQ_CANCEL:
      cancel_wait(op);
      break;
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
      timer_object_start((goro_timer *)op->timer, ((timer_req *)op)->gen, op->when);
      free(op);
      break;
    case REQ_TIMER_STOP: {
      goro_timer *t = op->timer;
      free(op);
      if (t->handle_init && TIMER_KIND(atomic_load(&t->state)) != TIMER_PENDING)
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
static timer_req *timer_req_new(goro_timer *t, int kind, uint64_t gen, int64_t when);

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
      uint64_t s = atomic_load(&t->state);
      if (TIMER_KIND(s) != TIMER_PENDING)
        continue;
      timer_req *r = timer_req_new(t, REQ_TIMER_START, TIMER_GEN(s), WHEN_KEEP);
      if (r == NULL)
        break;
      submit(&r->op);
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

/* Called by goro_init: timer objects still pending from before a stop
** go on, on a new loop, though nothing else may ask for the poller (a
** goroutine waiting on a timer's channel does not). */
void goro_netpoll_restart(void) {
  bool pending = false;
  goro_mutex_lock(&timerslock);
  for (goro_timer *t = alltimers; t && !pending; t = t->next)
    pending = TIMER_KIND(atomic_load(&t->state)) == TIMER_PENDING;
  goro_mutex_unlock(&timerslock);
  if (pending)
    netpoll_start();   /* on failure, the next request tries again */
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

/* goro_interrupt on a foreign thread waiting here: ask the poller for the
** wait back, unless it has ended already.  Either way the ready comes
** from the poller (false). */
static bool cancel_parked(goro_g *g, void *arg) {
  (void)g;
  goro_pollop *req = arg;
  if (cancel_cas(req->target, CANCEL_NONE, CANCEL_ASKED))
    submit(req);
  return false;
}

static int wait_blocking(goro_pollop *op, const char *reason) {
  if (netpoll_start() != GORO_OK)
    return GORO_ENOMEM;
  /* DNS runs on libuv's pool and cannot be called back: not cancelable. */
  goro_pollop cancel = { .kind = REQ_CANCEL, .target = op };
  goro_gopark_cancelable(submit_parked, op, reason,
                         op->kind == REQ_GAI ? NULL : cancel_parked, &cancel);
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
  goro_pollop op = { .kind = REQ_SLEEP, .when = deadline_after(ns) };
  return wait_blocking(&op, "sleep");
}

int goro_sleep_k(int64_t ns, goro_pollop *op, goro_fn k, void *karg) {
  if (ns <= 0)
    return GORO_OK;
  *op = (goro_pollop){ .kind = REQ_SLEEP, .when = deadline_after(ns) };
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

bool goro_fd_wait_prepare(goro_fd *f, int events, int64_t deadline,
                          goro_pollop *op) {
  return fd_prepare(f, events, deadline, op);
}

int goro_fd_wait_prepared(goro_pollop *op) {
  return wait_blocking(op, "IO wait");
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

static timer_req *timer_req_new(goro_timer *t, int kind, uint64_t gen, int64_t when) {
  timer_req *r = calloc(1, sizeof *r);
  if (r == NULL)
    return NULL;
  r->op.kind = kind;
  r->op.timer = t;
  r->op.when = when;
  r->gen = gen;
  return r;
}

goro_timer *goro_timer_start(int64_t ns, int64_t period, goro_timer_fn fn, void *ud) {
  if (netpoll_start() != GORO_OK)
    return NULL;
  goro_timer *t = calloc(1, sizeof *t);
  int64_t when = deadline_after(ns);
  timer_req *r = timer_req_new(t, REQ_TIMER_START, 0, when);
  if (t == NULL || r == NULL) {
    free(t);
    free(r);
    return NULL;
  }
  t->fn = fn;
  t->ud = ud;
  t->period = period > 0 ? period : 0;
  t->when = when;   /* not shared yet */
  atomic_store(&t->state, TIMER_STATE(0, TIMER_PENDING));
  goro_externalwait_add(1);
  goro_mutex_lock(&timerslock);
  t->next = alltimers;
  if (alltimers) alltimers->prev = t;
  alltimers = t;
  goro_mutex_unlock(&timerslock);
  submit(&r->op);
  return t;
}

/* PENDING -> `to`, waiting out a fn that runs right now.  True if it was
** pending. */
static bool timer_disarm(goro_timer *t, int to) {
  for (;;) {
    uint64_t s = atomic_load(&t->state);
    if (TIMER_KIND(s) == TIMER_FIRING) {
      goro_cpu_relax();
      continue;
    }
    if (TIMER_KIND(s) != TIMER_PENDING)
      return false;
    if (atomic_compare_exchange_weak(&t->state, &s, TIMER_STATE(TIMER_GEN(s), to))) {
      goro_externalwait_done(1);
      return true;
    }
  }
}

bool goro_timer_stop(goro_timer *t) {
  if (!timer_disarm(t, TIMER_IDLE))
    return false;
  /* The handle stops on the netpoll thread; if it fires first, it finds
  ** the timer IDLE and does nothing. */
  timer_req *r = timer_req_new(t, REQ_TIMER_STOP, 0, 0);
  if (r)
    submit(&r->op);
  return true;
}

/* Disarm, then arm a new generation, whose request carries the deadline:
** the old handle, should it fire before that request is served, finds a
** generation that is not its own and does nothing. */
bool goro_timer_reset(goro_timer *t, int64_t ns) {
  timer_req *r = timer_req_new(t, REQ_TIMER_START, 0, deadline_after(ns));
  if (r == NULL)
    goro_throw("netpoll: out of memory");
  bool was = timer_disarm(t, TIMER_IDLE);
  goro_externalwait_add(1);
  uint64_t s = atomic_load(&t->state), gen;
  do {
    while (TIMER_KIND(s) == TIMER_FIRING || TIMER_KIND(s) == TIMER_PENDING) {
      /* Only another reset, racing with this one, gets here. */
      if (TIMER_KIND(s) == TIMER_PENDING && timer_disarm(t, TIMER_IDLE))
        was = true;
      else
        goro_cpu_relax();
      s = atomic_load(&t->state);
    }
    gen = TIMER_GEN(s) + 1;
  } while (!atomic_compare_exchange_weak(&t->state, &s, TIMER_STATE(gen, TIMER_PENDING)));
  r->gen = gen;
  submit(&r->op);
  return was;
}

/* Requests are served in order: one made earlier for t (a stop, a reset)
** is done before the free. */
void goro_timer_free(goro_timer *t) {
  if (t == NULL)
    return;
  timer_disarm(t, TIMER_DONE);
  atomic_store(&t->freeing, true);
  timer_req *r = timer_req_new(t, REQ_TIMER_FREE, 0, 0);
  if (r == NULL)
    goro_throw("netpoll: out of memory");
  submit(&r->op);
}

int goro_getaddrinfo(const char *node, const char *service,
                     const struct addrinfo *hints, struct addrinfo **res) {
  gai_args a = { node, service, hints, res };
  goro_pollop op = { .kind = REQ_GAI, .timer = &a };
  int rc = wait_blocking(&op, "IO wait");
  return rc == GORO_ENOMEM ? EAI_MEMORY : rc;
}

/* }====================================================== */
