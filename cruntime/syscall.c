/*
** syscall.c — goroutines that block their thread (Go's entersyscall,
** exitsyscall, exitsyscall0).
**
** A blocking call holds its OS thread, but must not hold a P: the other
** goroutines need it.  entersyscall does not give the P away (most calls
** return within microseconds, and a hand-off costs a thread wake-up); it
** only marks the P P_SYSCALL.  If the call is still going when sysmon looks
** (20 µs to 10 ms later) and there is other work, sysmon takes the P with a
** CAS and hands it to another M (retake, handoffp).  On the way out the M
** tries to take its P back with the inverse CAS (the fast path), then any
** idle P; failing both, the goroutine goes to the global queue and the M
** goes idle (exitsyscall0).
*/
#include "scheduler.h"

void goro_entersyscall(void) {
  M *mp = goro_getm();
  if (mp == NULL || mp->curg == NULL)
    return;
  G *gp = mp->curg;
  P *pp = mp->p;
  COUNTER_INC(pp->syscalltick);
  atomic_fetch_add(&goro_sched.nmsyscall, 1);
  setgstatus(gp, G_RUNNING, G_SYSCALL);
  mp->oldp = pp;
  mp->p = NULL;
  RELAXED_STORE(pp->m, NULL);
  /* The release orders everything the G did on this P before a retake. */
  atomic_store_explicit(&pp->status, P_SYSCALL, memory_order_release);
  goro_sysmon_wake();   /* its first read is seq_cst: see sysmon.c */
}

void goro_exitsyscall(void) {
  M *mp = goro_getm();
  if (mp == NULL || mp->curg == NULL)
    return;
  G *gp = mp->curg;
  P *oldp = mp->oldp;
  mp->oldp = NULL;
  atomic_fetch_sub(&goro_sched.nmsyscall, 1);

  /* Fast path: our P is still ours unless sysmon took it. */
  uint32_t s = P_SYSCALL;
  if (atomic_compare_exchange_strong_explicit(&oldp->status, &s, P_RUNNING,
          memory_order_acquire, memory_order_relaxed)) {
    mp->p = oldp;
    RELEASE_STORE(oldp->m, mp);
    setgstatus(gp, G_SYSCALL, G_RUNNING);
    return;
  }

  /* Any idle P will do. */
  goro_mutex_lock(&goro_sched.lock);
  P *pp = pidleget();
  goro_mutex_unlock(&goro_sched.lock);
  if (pp) {
    acquirep(mp, pp);
    setgstatus(gp, G_SYSCALL, G_RUNNING);
    return;
  }

  /* None: queue the G and idle the M, from g0. */
  mp->after = GO_EXITSYSCALL;
  goro_fiber_to_g0(mp, gp);
  /* Resumed by some M that holds a P. */
}

/* On g0, after a G left its syscall without a P: one more try for an idle
** P (then the caller runs gp at once), else queue gp globally. */
void exitsyscall0(M *mp, G *gp) {
  setgstatus(gp, G_SYSCALL, G_RUNNABLE);
  goro_mutex_lock(&goro_sched.lock);
  P *pp = pidleget();
  if (pp == NULL)
    globrunqput(gp);
  goro_mutex_unlock(&goro_sched.lock);
  if (pp)
    acquirep(mp, pp);
}
