/*
** select.c — select over channels, as Go's runtime/select.go (selectgo).
**
**   1. Shuffle the enabled cases into a random poll order (fairness), and
**      sort them by channel address into a lock order (no deadlock between
**      two selects that share channels; a channel listed twice is locked
**      once).
**   2. Lock every channel and poll the cases in poll order; the first that
**      can proceed is done and wins.
**   3. Otherwise enqueue one sudog per case, each on its channel, and park;
**      the unlock callback releases all the channels.
**   4. The waker that won (by a CAS on G.selectdone, in waitq_dequeue) has
**      done the operation and left its sudog in G.param.  Relock, take the
**      losing sudogs off their queues, unlock.
*/
#include <stdlib.h>
#include <string.h>

#include "chan.h"


/* Go's sellock: lock every channel in address order.  Two selects that
** share channels take their locks in the same order, so they cannot
** deadlock; a channel listed twice sorts next to itself and is locked once
** (the locks do not nest). */
static void sellock(goro_select_case *cases, const uint16_t *lockorder, int n) {
  goro_chan *prev = NULL;
  for (int i = 0; i < n; i++) {
    goro_chan *c = cases[lockorder[i]].c;
    if (c != prev)
      goro_mutex_lock(&c->lock);
    prev = c;
  }
}

/* Go's selunlock: unlock in reverse order.  When called by the park
** callback, the G may be readied (by a waker on a channel already
** unlocked) and resumed on another M while this still runs; it then waits
** for the lowest channel, the last one unlocked here.  So nothing of the G
** (`cases` and `lockorder` live on its stack) is touched after that last
** unlock. */
static void selunlock_except(goro_select_case *cases, const uint16_t *lockorder,
                             int n, goro_chan *keep) {
  for (int i = n - 1; i >= 0; i--) {
    goro_chan *c = cases[lockorder[i]].c;
    if (c == keep || (i > 0 && c == cases[lockorder[i - 1]].c))
      continue;   /* kept, or a duplicate: unlocked at its last occurrence */
    goro_mutex_unlock(&c->lock);
  }
}

static void selunlock(goro_select_case *cases, const uint16_t *lockorder, int n) {
  selunlock_except(cases, lockorder, n, NULL);
}

/* Go's selparkcommit: the park callback of a select, run once the G's
** state is saved.  Until then every channel stays locked, so no waker can
** find one of its sudogs before it can be readied. */
static bool selparkcommit(goro_g *g, void *arg) {
  (void)g;
  goro_chanop *op = arg;
  selunlock(op->cases, op->order + op->ncases, op->norder);
  return true;
}

/* Sort lockorder by channel address: Go's heap sort in selectgo.  No
** allocation, O(n log n) even in the worst case, and in place. */
static void sortbyaddr(goro_select_case *cases, uint16_t *a, int n) {
#define ADDR(i) ((uintptr_t)cases[a[i]].c)
  for (int start = n / 2 - 1; start >= 0; start--) {
    for (int root = start;;) {
      int child = 2 * root + 1;
      if (child >= n) break;
      if (child + 1 < n && ADDR(child) < ADDR(child + 1)) child++;
      if (ADDR(root) >= ADDR(child)) break;
      uint16_t t = a[root]; a[root] = a[child]; a[child] = t;
      root = child;
    }
  }
  for (int end = n - 1; end > 0; end--) {
    uint16_t t = a[0]; a[0] = a[end]; a[end] = t;
    for (int root = 0;;) {
      int child = 2 * root + 1;
      if (child >= end) break;
      if (child + 1 < end && ADDR(child) < ADDR(child + 1)) child++;
      if (ADDR(root) >= ADDR(child)) break;
      t = a[root]; a[root] = a[child]; a[child] = t;
      root = child;
    }
  }
#undef ADDR
}

enum { NOT_READY = 1 };   /* distinct from every GORO_* code (<= 0) */

/*
** Pass 1 of Go's selectgo, for one case: proceed now if it can.  Every
** channel is locked; when the case proceeds, all are unlocked on return.
** Returns NOT_READY if it cannot, else the select's GORO_* result.  The
** checks come in the order of chansend and chanrecv (a receive looks at
** waiting senders, then the buffer, then close; a send at close, then
** waiting receivers, then the buffer).  When a partner waits, the other
** channels are unlocked first and the partner's own channel by
** chan_send_to/chan_recv_from, which ready the partner after it.
*/
static int trycase(goro_select_case *cases, int i, const uint16_t *lockorder,
                   int nlock) {
  goro_select_case *cas = &cases[i];
  goro_chan *c = cas->c;
  sudog *sg;
  if (cas->dir == GORO_SELECT_RECV) {
    if ((sg = waitq_dequeue(&c->sendq)) != NULL) {
      /* chan_recv_from unlocks c itself: release the others first. */
      cas->ok = true;
      selunlock_except(cases, lockorder, nlock, c);
      chan_recv_from(c, sg, cas->elem);
      return GORO_OK;
    }
    if (c->qcount > 0) {
      elemcopy(c, cas->elem, chanbuf(c, c->recvx));
      if (++c->recvx == c->dataqsiz) c->recvx = 0;
      CHAN_STORE(c->qcount, c->qcount - 1);
      cas->ok = true;
      selunlock(cases, lockorder, nlock);
      return GORO_OK;
    }
    if (c->closed) {
      elemclear(c, cas->elem);
      cas->ok = false;
      selunlock(cases, lockorder, nlock);
      return GORO_OK;
    }
  } else {
    if (c->closed) {
      selunlock(cases, lockorder, nlock);
      return GORO_ECLOSED;
    }
    if ((sg = waitq_dequeue(&c->recvq)) != NULL) {
      selunlock_except(cases, lockorder, nlock, c);
      chan_send_to(c, sg, cas->elem);
      return GORO_OK;
    }
    if (c->qcount < c->dataqsiz) {
      elemcopy(c, chanbuf(c, c->sendx), cas->elem);
      if (++c->sendx == c->dataqsiz) c->sendx = 0;
      CHAN_STORE(c->qcount, c->qcount + 1);
      selunlock(cases, lockorder, nlock);
      return GORO_OK;
    }
  }
  return NOT_READY;
}

/* Go's block(): select {} parks for good. */
static bool parkforever(goro_g *g, void *arg) {
  (void)g; (void)arg;
  return true;
}

/* The poll and lock orders: 2n indices, in the op if they fit. */
static int order_alloc(goro_chanop *op, int n) {
  op->order = op->inorder;
  if (2 * (size_t)n > sizeof op->inorder / sizeof op->inorder[0]) {
    op->order = malloc(2 * (size_t)n * sizeof *op->order);
    if (op->order == NULL)
      return GORO_ENOMEM;
  }
  return GORO_OK;
}

static void order_free(goro_chanop *op) {
  if (op->order != op->inorder)
    free(op->order);
  op->order = NULL;
}

/*
** Go's selectgo, with Go's block flag standing for "no default case".
** `op` holds what outlives a park (the cases and both orders): on the
** caller's stack for goro_select, in the caller's memory for goro_select_k,
** whose park (pk) drops the stack.
*/
static int selectgo(goro_select_case *cases, int n, bool block, int *chosen,
                    goro_chanop *op, goro_fn k, void *karg) {
  int unused;
  if (chosen == NULL)
    chosen = &unused;
  *chosen = -1;
  if (n < 0 || n > UINT16_MAX || (n > 0 && cases == NULL))
    return GORO_EINVAL;
  for (int i = 0; i < n; i++)
    if (cases[i].c && cases[i].dir != GORO_SELECT_RECV &&
        cases[i].dir != GORO_SELECT_SEND)
      return GORO_EINVAL;
  if (order_alloc(op, n) != GORO_OK)
    return GORO_ENOMEM;
  uint16_t *pollorder = op->order, *lockorder = op->order + n;
  op->cases = cases;
  op->ncases = n;

  /* Random poll order over the enabled cases (an inside-out Fisher-Yates
  ** shuffle, as Go's cheaprandn loop): among several ready cases each is
  ** polled first, and so chosen, with equal probability.  Disabled cases
  ** (Go's nil channels) take no part at all. */
  int norder = 0;
  for (int i = 0; i < n; i++) {
    if (cases[i].c == NULL)
      continue;
    uint32_t j = goro_fastrandn((uint32_t)norder + 1);
    pollorder[norder] = pollorder[j];
    pollorder[j] = (uint16_t)i;
    norder++;
  }
  op->norder = norder;
  int rc = GORO_OK;

  if (norder == 0) {
    order_free(op);
    if (!block)
      return GORO_EAGAIN;
    /* select {} : from a goroutine, block forever, as Go.  A foreign thread
    ** would hang for good: tell it instead. */
    if (goro_getm() == NULL)
      return GORO_EDEADLK;
    goro_gopark(parkforever, NULL, "select (no cases)");
    goro_throw("select with no cases was woken");
  }

  memcpy(lockorder, pollorder, (size_t)norder * sizeof *lockorder);
  sortbyaddr(cases, lockorder, norder);
  sellock(cases, lockorder, norder);

  /* Pass 1: a case that can proceed now. */
  for (int i = 0; i < norder; i++) {
    int casi = pollorder[i];
    int r = trycase(cases, casi, lockorder, norder);
    if (r != NOT_READY) {
      *chosen = casi;
      rc = r;
      goto out;
    }
  }
  if (!block) {
    selunlock(cases, lockorder, norder);
    rc = GORO_EAGAIN;
    goto out;
  }

  /* Pass 2: a sudog on every channel, linked in lock order on G.waiting. */
  G *gp = goro_getg();
  sudog **link = &gp->waiting;
  for (int i = 0; i < norder; i++) {
    int casi = lockorder[i];
    sudog *sg = goro_acquire_sudog();
    sg->g = gp;
    sg->isselect = true;
    sg->elem = cases[casi].elem;
    sg->c = cases[casi].c;
    goro_chan_ref(sg->c);
    sg->caseidx = casi;
    *link = sg;
    link = &sg->waitlink;
    if (cases[casi].dir == GORO_SELECT_RECV)
      waitq_enqueue(&cases[casi].c->recvq, sg);
    else
      waitq_enqueue(&cases[casi].c->sendq, sg);
  }
  *link = NULL;
  gp->param = NULL;
  op->kind = OP_SELECT_KIND;
  if (k)
    goro_park_k(selparkcommit, op, "select", k, karg);
  if (goro_gopark_cancelable(selparkcommit, op, "select",
                             goro_chan_cancel_park, NULL)) {
    /* Interrupted: goro_chan_cancel took every sudog off its queue. */
    for (sudog *sg = gp->waiting, *next; sg; sg = next) {
      next = sg->waitlink;
      sg->waitlink = NULL;
      goro_release_sudog(sg);
    }
    gp->waiting = NULL;
    atomic_store(&gp->selectdone, 0);
    rc = GORO_EINTR;
    goto out;
  }
  return goro_selectop_finish(op, chosen);

out:
  order_free(op);
  return rc;
}

/* Pass 3: the winner is in param; take the others off their queues. */
int goro_selectop_finish(goro_chanop *op, int *chosen) {
  goro_select_case *cases = op->cases;
  uint16_t *lockorder = op->order + op->ncases;
  int norder = op->norder;
  int rc = GORO_OK;
  G *gp = goro_getg();
  op->kind = 0;
  sellock(cases, lockorder, norder);
  atomic_store(&gp->selectdone, 0);
  sudog *won = gp->param;
  gp->param = NULL;
  int casi = -1;
  bool success = false;
  sudog *all = gp->waiting;
  gp->waiting = NULL;
  for (sudog *sg = all; sg; sg = sg->waitlink) {
    if (sg == won) {
      casi = sg->caseidx;
      success = sg->success;
    } else if (cases[sg->caseidx].dir == GORO_SELECT_RECV) {
      waitq_remove(&sg->c->recvq, sg);
    } else {
      waitq_remove(&sg->c->sendq, sg);
    }
  }
  if (casi < 0)
    goro_throw("select: woken without a winning case");
  selunlock(cases, lockorder, norder);
  /* Released unlocked: a release may free a channel its creator freed. */
  for (sudog *sg = all, *next; sg; sg = next) {
    next = sg->waitlink;
    sg->waitlink = NULL;
    goro_release_sudog(sg);
  }
  order_free(op);
  if (chosen)
    *chosen = casi;
  if (cases[casi].dir == GORO_SELECT_RECV)
    cases[casi].ok = success;   /* false: closed (elem zeroed by close) */
  else if (!success)
    rc = GORO_ECLOSED;          /* a send woken by close */
  return rc;
}

bool goro_select_maybe_ready(const goro_select_case *cases, int n) {
  for (int i = 0; i < n; i++) {
    goro_chan *c = cases[i].c;
    if (c == NULL)
      continue;
    if (__atomic_load_n(&c->closed, __ATOMIC_ACQUIRE))
      return true;
    if (cases[i].dir == GORO_SELECT_RECV ? !chan_empty(c) : !chan_full(c))
      return true;
  }
  return false;
}

int goro_select(goro_select_case *cases, int n, bool block, int *chosen) {
  goro_chanop op;
  return selectgo(cases, n, block, chosen, &op, NULL, NULL);
}

int goro_select_k(goro_select_case *cases, int n, bool block, int *chosen,
                  goro_chanop *op, goro_fn k, void *karg) {
  if (k == NULL)
    return GORO_EINVAL;
  return selectgo(cases, n, block, chosen, op, k, karg);
}
