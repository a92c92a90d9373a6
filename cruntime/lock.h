/*
** lock.h — the runtime's low-level synchronisation, on Linux futexes.
**
**   goro_mutex   a short-term lock (Go's runtime.mutex): spins briefly, then
**                sleeps in the kernel.  Never held across a goroutine switch
**                except by the park protocol, which releases it on the same
**                thread (see goro_park).
**   goro_note    a one-shot event (Go's note): one sleeper, one waker.
**   goro_sema    a counting semaphore with one waiting thread: how a
**                foreign thread parks.
**
** All state is C11 atomics, so ThreadSanitizer sees every happens-before
** edge; the futex calls only block and wake.
*/
#ifndef GORO_LOCK_H
#define GORO_LOCK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

typedef struct goro_mutex { _Atomic uint32_t key; } goro_mutex;
typedef struct goro_note  { _Atomic uint32_t key; } goro_note;
typedef struct goro_sema  { _Atomic uint32_t v; } goro_sema;   /* one waiter */

#define GORO_MUTEX_INIT { 0 }

void goro_mutex_lock(goro_mutex *l);
void goro_mutex_unlock(goro_mutex *l);
bool goro_mutex_trylock(goro_mutex *l);

void goro_note_clear(goro_note *n);
void goro_note_wakeup(goro_note *n);
void goro_note_sleep(goro_note *n);
/* Sleep until woken or `ns` nanoseconds passed; true if woken. */
bool goro_note_sleep_ns(goro_note *n, int64_t ns);

void goro_sema_post(goro_sema *s);
void goro_sema_wait(goro_sema *s);

/* Monotonic clock in nanoseconds. */
int64_t goro_nanotime(void);

/* A spin-wait hint for the CPU (pause / yield). */
static inline void goro_cpu_relax(void) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ __volatile__("yield" ::: "memory");
#endif
}

#endif
