/*
** sysmon.c — the system monitor (Go's sysmon), and the schedtrace line.
**
** A thread of its own that holds no P.  It wakes every 20 µs while the
** runtime is busy, doubling its sleep up to 10 ms once it has found
** nothing to do for a while, and does two things to every P:
**
**   retake   a P that has sat in P_SYSCALL since sysmon's last look is
**            handed to another M, if anything else could use it (handoffp).
**   preempt  a G that has run for more than 10 ms without passing through
**            the scheduler is asked to yield: its preempt flag is set (C
**            tasks see it at goro_yield / goro_preempt_point) and the
**            embedder's hook is told, so it can interrupt code that does not
**            poll (a Lua VM, by a signal).  So is a foreign thread that has
**            kept a token 10 ms while goroutines wait for it (token.c).
**
** It also gives back the pages of surplus pooled stacks (stack.c), a batch
** per tick.  When every P is idle and no M is in a syscall there is nothing
** to watch: sysmon finishes that and sleeps until startm or entersyscall
** wakes it.
*/
#include "scheduler.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define sched goro_sched

enum {
  SYSMON_MIN_US = 20,
  SYSMON_MAX_US = 10000,
  FORCE_PREEMPT_NS = 10 * 1000 * 1000,
};

_Atomic bool goro_sysmon_idle;

static pthread_t sysmon_thread;
static goro_note sysmon_note;      /* woken early: stop, or work appeared */
static goro_mutex sysmon_lock;     /* orders goro_sysmon_idle with wakers */
static _Atomic bool sysmon_stop;
static int64_t schedtrace_ms;      /* GORO_DEBUG=schedtrace=MS */

/* The first read is seq_cst: wakers made work visible (a P busy, an M in
** a syscall, a G queued on a token) just before, and sysmon reads those
** after setting the flag, a Dekker pattern that a relaxed read does not
** order on weak memory (arm64). */
void goro_sysmon_wake(void) {
  if (!atomic_load(&goro_sysmon_idle))
    return;
  goro_mutex_lock(&sysmon_lock);
  if (atomic_load(&goro_sysmon_idle)) {
    atomic_store(&goro_sysmon_idle, false);
    goro_note_wakeup(&sysmon_note);
  }
  goro_mutex_unlock(&sysmon_lock);
}

/* Look at every P once.  Returns how many it retook or preempted. */
static int retake(int64_t now) {
  int n = 0;
  for (int i = 0; i < sched.nprocs; i++) {
    P *pp = sched.allp[i];
    uint32_t s = atomic_load_explicit(&pp->status, memory_order_relaxed);
    if (s == P_RUNNING || s == P_SYSCALL) {
      uint32_t t = atomic_load_explicit(&pp->schedtick, memory_order_relaxed);
      if (pp->sysmontick != t) {
        pp->sysmontick = t;
        pp->sysmonwhen = now;
      } else if (pp->sysmonwhen + FORCE_PREEMPT_NS <= now && s == P_RUNNING) {
        goro_preemptone(pp);
        pp->sysmonwhen = now;   /* one request per slice, not per tick */
        n++;
      }
    }
    if (s != P_SYSCALL)
      continue;
    /* Retake only a P that has been in the same syscall for a whole
    ** sysmon tick: most calls are short, and a hand-off wakes a thread. */
    uint32_t t = atomic_load_explicit(&pp->syscalltick, memory_order_relaxed);
    if (pp->sysmonsyscalltick != t) {
      pp->sysmonsyscalltick = t;
      pp->sysmonsyscallwhen = now;
      continue;
    }
    /* Leave it if nobody needs it: no local work, somebody spinning or
    ** idle to pick up other work, and not stuck for long. */
    if (runqempty(pp) &&
        atomic_load(&sched.nmspinning) + atomic_load(&sched.npidle) > 0 &&
        pp->sysmonsyscallwhen + FORCE_PREEMPT_NS > now)
      continue;
    uint32_t expect = P_SYSCALL;
    if (atomic_compare_exchange_strong_explicit(&pp->status, &expect, P_IDLE,
            memory_order_acquire, memory_order_relaxed)) {
      atomic_fetch_add(&sched.nhandoff, 1);
      handoffp(pp);
      n++;
    }
  }
  return n;
}

static void schedtrace(int64_t start, int64_t now) {
  char line[4096];
  int len = snprintf(line, sizeof line,
      "SCHED %lldms: gomaxprocs=%d idleprocs=%d threads=%d "
      "spinningthreads=%d idlethreads=%d runqueue=%lld [",
      (long long)((now - start) / 1000000), sched.nprocs,
      atomic_load(&sched.npidle), RELAXED_LOAD(sched.mcount),
      atomic_load(&sched.nmspinning), RELAXED_LOAD(sched.nmidle),
      (long long)atomic_load(&sched.runqsize));
  for (int i = 0; i < sched.nprocs && len < (int)sizeof line - 16; i++)
    len += snprintf(line + len, sizeof line - (size_t)len, i ? " %u" : "%u",
                    runqlen(sched.allp[i]));
  if (len < (int)sizeof line - 2)
    len += snprintf(line + len, sizeof line - (size_t)len, "]\n");
  fputs(line, stderr);
}

/* Nothing to watch: no P busy, no M in a syscall, and no goroutine queued
** on a token (whose foreign owner may need preempting). */
static bool all_idle(void) {
  return atomic_load(&sched.npidle) == sched.nprocs &&
         atomic_load(&sched.nmsyscall) == 0 && !goro_token_waiting();
}

static void *sysmon(void *arg) {
  (void)arg;
  int64_t start = goro_nanotime(), lasttrace = start;
  int64_t delay_us = SYSMON_MIN_US;
  int quiet = 0;    /* ticks in a row with nothing to do */
  while (!atomic_load(&sysmon_stop)) {
    int64_t sleep_ns = delay_us * 1000;
    if (schedtrace_ms > 0) {
      int64_t left = lasttrace + schedtrace_ms * 1000000 - goro_nanotime();
      if (left < sleep_ns) sleep_ns = left > 0 ? left : 0;
    }
    goro_note_clear(&sysmon_note);
    if (schedtrace_ms <= 0 && all_idle()) {
      /* Deep sleep until a P gets busy or an M enters a syscall.  The
      ** flag is set under the lock, then the condition re-checked, so a
      ** waker that made it false either sees the flag or we see it. */
      while (goro_stack_scavenge() > 0 && !atomic_load(&sysmon_stop)) {}
      goro_mutex_lock(&sysmon_lock);
      atomic_store(&goro_sysmon_idle, true);
      goro_mutex_unlock(&sysmon_lock);
      if (all_idle() && !atomic_load(&sysmon_stop))
        goro_note_sleep(&sysmon_note);
      atomic_store(&goro_sysmon_idle, false);
      delay_us = SYSMON_MIN_US;
      quiet = 0;
      continue;
    }
    if (sleep_ns > 0)
      goro_note_sleep_ns(&sysmon_note, sleep_ns);
    int64_t now = goro_nanotime();
    if (goro_stack_scavenge() > 0)
      quiet = 0;
    if (retake(now) + goro_token_sysmon(now) > 0) {
      quiet = 0;
      delay_us = SYSMON_MIN_US;
    } else if (++quiet > 50) {
      /* Go: after 1 ms of nothing, back off exponentially to 10 ms. */
      delay_us = delay_us * 2 > SYSMON_MAX_US ? SYSMON_MAX_US : delay_us * 2;
    }
    if (schedtrace_ms > 0 && now - lasttrace >= schedtrace_ms * 1000000) {
      schedtrace(start, now);
      lasttrace = now;
    }
  }
  return NULL;
}

/* GORO_DEBUG is a comma-separated list of name=value, like GODEBUG. */
static int64_t debug_setting(const char *name) {
  const char *s = getenv("GORO_DEBUG");
  size_t n = strlen(name);
  while (s && *s) {
    if (strncmp(s, name, n) == 0 && s[n] == '=')
      return strtoll(s + n + 1, NULL, 10);
    s = strchr(s, ',');
    if (s) s++;
  }
  return 0;
}

int goro_sysmon_start(void) {
  schedtrace_ms = debug_setting("schedtrace");
  atomic_store(&sysmon_stop, false);
  atomic_store(&goro_sysmon_idle, false);
  goro_note_clear(&sysmon_note);
  sigset_t old;
  goro_block_async_signals(&old);
  int rc = pthread_create(&sysmon_thread, NULL, sysmon, NULL);
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  return rc == 0 ? GORO_OK : GORO_ENOMEM;
}

void goro_sysmon_stop(void) {
  atomic_store(&sysmon_stop, true);
  goro_mutex_lock(&sysmon_lock);
  goro_note_wakeup(&sysmon_note);
  goro_mutex_unlock(&sysmon_lock);
  pthread_join(sysmon_thread, NULL);
}
