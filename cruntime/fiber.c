/*
** fiber.c — switching between a G and its M's scheduler context (g0), with
** the annotations that let the sanitizers follow.
**
** Every switch goes through here, never straight to goro_ctx_switch:
**   ThreadSanitizer keeps a shadow call stack and vector clock per fiber;
**     __tsan_switch_to_fiber(f, 0) just before the switch tells it which
**     fiber runs now, and flags 0 makes the switch a synchronisation (the G
**     really is handed over).
**   AddressSanitizer must know the bounds of the stack it is on, or it
**     takes the G's stack for a huge out-of-bounds region of the thread's;
**     __sanitizer_start_switch_fiber before and _finish_ after each switch.
**     A G resumes on whatever M picked it, so the finish call records that
**     M's g0 stack bounds, which ASan reports as "where we came from".
*/
#include "runtime.h"

#if defined(__SANITIZE_ADDRESS__)
# define GORO_ASAN 1
#endif
#if defined(__SANITIZE_THREAD__)
# define GORO_TSAN 1
#endif
#if defined(__has_feature)
# if __has_feature(address_sanitizer)
#  define GORO_ASAN 1
# endif
# if __has_feature(thread_sanitizer)
#  define GORO_TSAN 1
# endif
#endif

#ifdef GORO_ASAN
# include <sanitizer/asan_interface.h>
# include <sanitizer/common_interface_defs.h>
#endif

#ifdef GORO_TSAN
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
#endif

/* Fibers live as long as the G has a stack: TSan caps fibers and threads
** together at 8128, and a million queued Gs have no stack yet. */
void goro_fiber_create(G *gp) {
#ifdef GORO_TSAN
  if (gp->tsan_fiber == NULL)
    gp->tsan_fiber = __tsan_create_fiber(0);
#else
  (void)gp;
#endif
}

void goro_fiber_destroy(G *gp) {
#ifdef GORO_TSAN
  if (gp->tsan_fiber)
    __tsan_destroy_fiber(gp->tsan_fiber);
  gp->tsan_fiber = NULL;
#else
  (void)gp;
#endif
}

void goro_fiber_init_g0(M *mp) {
#ifdef GORO_TSAN
  mp->g0_tsan_fiber = __tsan_get_current_fiber();
#else
  (void)mp;
#endif
}

/* On g0: run gp until it switches back to this M's g0. */
void goro_fiber_to_g(M *mp, G *gp) {
#ifdef GORO_ASAN
  void *fake = NULL;
  __sanitizer_start_switch_fiber(&fake, gp->stack.lo, gp->stack.size);
#endif
#ifdef GORO_TSAN
  while (atomic_load_explicit(&gp->tsan_unlocking, memory_order_acquire))
    goro_cpu_relax();
  __tsan_switch_to_fiber(gp->tsan_fiber, 0);
#endif
  goro_ctx_switch(&mp->g0ctx, &gp->ctx);
#ifdef GORO_ASAN
  __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
}

/* Record, on the G's stack, the bounds of the g0 we just came from. */
static void finish_on_g(G *gp) {
#ifdef GORO_ASAN
  M *mp = goro_getm();
  __sanitizer_finish_switch_fiber(gp->asan_fake_stack, &mp->g0_asan_bottom,
                                  &mp->g0_asan_size);
#else
  (void)gp;
#endif
}

void goro_fiber_started(G *gp) {
  gp->asan_fake_stack = NULL;
  finish_on_g(gp);
}

/* On gp: switch to g0.  Returns when gp is resumed, perhaps by another M,
** so the caller must re-read goro_getm() afterwards. */
void goro_fiber_to_g0(M *mp, G *gp) {
#ifdef GORO_ASAN
  __sanitizer_start_switch_fiber(&gp->asan_fake_stack, mp->g0_asan_bottom,
                                 mp->g0_asan_size);
#endif
#ifdef GORO_TSAN
  __tsan_switch_to_fiber(mp->g0_tsan_fiber, 0);
#endif
  goro_ctx_switch(&gp->ctx, &mp->g0ctx);
  finish_on_g(gp);
}

/* On gp, which has finished: switch to g0 for good.  gp's stack may be
** reused at once, so ASan is told to drop its fake stack (NULL slot). */
_Noreturn void goro_fiber_exit_to_g0(M *mp, G *gp) {
#ifdef GORO_ASAN
  __sanitizer_start_switch_fiber(NULL, mp->g0_asan_bottom, mp->g0_asan_size);
#endif
#ifdef GORO_TSAN
  __tsan_switch_to_fiber(mp->g0_tsan_fiber, 0);
#endif
  goro_ctx_switch(&gp->ctx, &mp->g0ctx);
  goro_throw("goro_fiber_exit_to_g0: a dead goroutine was resumed");
}

/*
** Run a park's unlock callback as the parking G, though on g0's stack.
** The G took the lock it now releases: to TSan, which ties a mutex to the
** fiber that locked it, an unlock from g0's fiber is "by a wrong thread".
** Once the lock is released another M may resume gp, while this M still
** wears gp's fiber; TSan forbids a fiber on two threads, so in TSan builds
** the other M waits (goro_fiber_to_g) until this one has switched back.
*/
bool goro_fiber_unlock_as(M *mp, G *gp, void *fiber, goro_unlockf f, void *lock) {
#ifdef GORO_TSAN
  atomic_store_explicit(&gp->tsan_unlocking, true, memory_order_relaxed);
  __tsan_switch_to_fiber(fiber, 0);
  bool parked = f(gp, lock);
  __tsan_switch_to_fiber(mp->g0_tsan_fiber, 0);
  atomic_store_explicit(&gp->tsan_unlocking, false, memory_order_release);
  return parked;
#else
  (void)mp; (void)fiber;
  return f(gp, lock);
#endif
}

/*
** A G parked by goro_park_k restarts on a fresh stack, but its TSan fiber
** still has the abandoned frames on its shadow stack, which would grow with
** every such park.  So the G drops it (its restart creates a new one, like
** a first run: fibers live only as long as stacks, since TSan caps fibers
** and threads together at 8128); the old one is returned for the park's
** unlock, which took the lock as that fiber, and released after it.
*/
void *goro_fiber_renew(G *gp) {
#ifdef GORO_TSAN
  void *old = gp->tsan_fiber;
  gp->tsan_fiber = NULL;
  return old;
#else
  (void)gp;
  return NULL;
#endif
}

void goro_fiber_release(void *fiber) {
#ifdef GORO_TSAN
  if (fiber)
    __tsan_destroy_fiber(fiber);
#else
  (void)fiber;
#endif
}

/* A stack about to be reused by a new G: forget the poisoning left by the
** frames of the G that last ran on it (it never returned from them). */
void goro_fiber_clean_stack(goro_stack *s) {
#ifdef GORO_ASAN
  ASAN_UNPOISON_MEMORY_REGION(s->lo, s->size);
#else
  (void)s;
#endif
}
