/*
** scheduler.h — functions shared by the scheduler's files (runq.c, sched.c,
** syscall.c, sysmon.c).  Channels and the rest of the runtime use only
** runtime.h.
*/
#ifndef GORO_SCHEDULER_H
#define GORO_SCHEDULER_H

#include "runtime.h"

/* runq.c: local run queue of a P */
void runqput(P *pp, G *gp, bool next);
void runqputbatch(P *pp, G *head, int n);
G *runqget(P *pp, bool *inherit);
G *runqsteal(P *pp, P *victim, bool stealnext);
bool runqempty(P *pp);
uint32_t runqlen(P *pp);
void runqdrain(P *pp);             /* sched.lock held */

/* runq.c: global run queue, sched.lock held */
void globrunqput(G *gp);
void globrunqputbatch(G *head, G *tail, int64_t n);
G *globrunqget(P *pp, int max);

/* sched.c */
void casgstatus(G *gp, uint32_t from, uint32_t to);  /* may race */
void setgstatus(G *gp, uint32_t from, uint32_t to);  /* owner only */
P *pidleget(void);                 /* sched.lock held */
void pidleput(P *pp);              /* sched.lock held */
void acquirep(M *mp, P *pp);
void startm(P *pp, bool spinning);
void wakep(void);
void handoffp(P *pp);
/* A G that left a syscall without finding a P, on g0 (syscall.c). */
void exitsyscall0(M *mp, G *gp);
/* Ask the G running on pp to yield (sysmon, shutdown). */
void goro_preemptone(P *pp);

/* Block the signals a host handles, keep faults deliverable. */
void goro_block_async_signals(sigset_t *old);

/* sysmon.c */
extern _Atomic bool goro_sysmon_idle;  /* sysmon sleeps until woken */

/* Plain fields that sysmon and goro_stats read from other threads.  P.m
** and M.curg are published with release and read with acquire, so that
** sysmon may follow them to the M and G they point to. */
#define RELAXED_LOAD(x)     __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define RELAXED_STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)
#define ACQUIRE_LOAD(x)     __atomic_load_n(&(x), __ATOMIC_ACQUIRE)
#define RELEASE_STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELEASE)

/* Counters written by one thread only: no read-modify-write needed. */
#define COUNTER_INC(x) \
  atomic_store_explicit(&(x), atomic_load_explicit(&(x), memory_order_relaxed) + 1, \
                        memory_order_relaxed)

#endif
