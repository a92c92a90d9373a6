/*
** lock.c — futex-based mutex, note and semaphore (see lock.h).
*/
#include "lock.h"

#include <errno.h>
#include <limits.h>
#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static long futex(_Atomic uint32_t *addr, int op, uint32_t val,
                  const struct timespec *ts) {
  return syscall(SYS_futex, (uint32_t *)addr, op | FUTEX_PRIVATE_FLAG, val,
                 ts, NULL, 0);
}

int64_t goro_nanotime(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}


/*
** Mutex: Drepper's three-state futex lock ("Futexes Are Tricky", mutex3).
** 0 unlocked, 1 locked, 2 locked and somebody may sleep on it.  A short
** spin first, because the runtime's critical sections are a few dozen
** instructions and the holder is usually running on the other core.
*/
enum { MUTEX_SPIN = 100 };

bool goro_mutex_trylock(goro_mutex *l) {
  uint32_t expected = 0;
  return atomic_compare_exchange_strong_explicit(
      &l->key, &expected, 1, memory_order_acquire, memory_order_relaxed);
}

void goro_mutex_lock(goro_mutex *l) {
  uint32_t c = 0;
  if (atomic_compare_exchange_strong_explicit(&l->key, &c, 1,
          memory_order_acquire, memory_order_relaxed))
    return;
  for (int i = 0; i < MUTEX_SPIN; i++) {
    goro_cpu_relax();
    c = 0;
    if (atomic_load_explicit(&l->key, memory_order_relaxed) == 0 &&
        atomic_compare_exchange_weak_explicit(&l->key, &c, 1,
            memory_order_acquire, memory_order_relaxed))
      return;
  }
  /* Announce a sleeper (2) and sleep until we take it in state 2: we cannot
  ** know whether others still sleep, so the next unlock must wake one. */
  while (atomic_exchange_explicit(&l->key, 2, memory_order_acquire) != 0)
    futex(&l->key, FUTEX_WAIT, 2, NULL);
}

void goro_mutex_unlock(goro_mutex *l) {
  if (atomic_exchange_explicit(&l->key, 0, memory_order_release) == 2)
    futex(&l->key, FUTEX_WAKE, 1, NULL);
}


/*
** Note: key 0 clear, 1 woken.  One thread sleeps, another wakes it once; the
** sleeper clears it before it can be reused.
*/
void goro_note_clear(goro_note *n) {
  atomic_store_explicit(&n->key, 0, memory_order_relaxed);
}

void goro_note_wakeup(goro_note *n) {
  atomic_store_explicit(&n->key, 1, memory_order_release);
  futex(&n->key, FUTEX_WAKE, 1, NULL);
}

void goro_note_sleep(goro_note *n) {
  while (atomic_load_explicit(&n->key, memory_order_acquire) == 0)
    futex(&n->key, FUTEX_WAIT, 0, NULL);
}

bool goro_note_sleep_ns(goro_note *n, int64_t ns) {
  int64_t deadline = goro_nanotime() + ns;
  while (atomic_load_explicit(&n->key, memory_order_acquire) == 0) {
    int64_t left = deadline - goro_nanotime();
    if (left <= 0) return false;
    struct timespec ts = { left / 1000000000, left % 1000000000 };
    futex(&n->key, FUTEX_WAIT, 0, &ts);
  }
  return true;
}


/*
** Semaphore: the count of posts not yet consumed, and a bit that says the
** waiter may be asleep, in one word.  A post is then one atomic add, and
** that add is its last touch of the semaphore: the woken thread may free it
** (a thread's waiter dies with the thread) the moment it sees the count.
** Only its own thread waits on a semaphore, so the waiter alone clears the
** sleeper bit, when it takes a post.
*/
#define SEMA_SLEEPER 0x80000000u
#define SEMA_COUNT   0x7fffffffu

void goro_sema_post(goro_sema *s) {
  uint32_t old = atomic_fetch_add_explicit(&s->v, 1, memory_order_release);
  if (old & SEMA_SLEEPER)
    futex(&s->v, FUTEX_WAKE, 1, NULL);
}

void goro_sema_wait(goro_sema *s) {
  uint32_t v = atomic_load_explicit(&s->v, memory_order_acquire);
  for (;;) {
    if (v & SEMA_COUNT) {
      if (atomic_compare_exchange_weak_explicit(&s->v, &v,
              (v - 1) & ~SEMA_SLEEPER, memory_order_acquire,
              memory_order_acquire))
        return;
      continue;
    }
    if (!(v & SEMA_SLEEPER)) {
      if (!atomic_compare_exchange_weak_explicit(&s->v, &v, v | SEMA_SLEEPER,
              memory_order_acquire, memory_order_acquire))
        continue;
      v |= SEMA_SLEEPER;
    }
    futex(&s->v, FUTEX_WAIT, v, NULL);
    v = atomic_load_explicit(&s->v, memory_order_acquire);
  }
}
