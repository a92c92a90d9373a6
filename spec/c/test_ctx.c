/*
** test_ctx.c — the context switch (ctx.h) on its own: no scheduler, stacks
** mapped here.
**
** What a switch must keep is what the ABI makes callee-saved: integer
** registers, aarch64's d8-d15, and the FP control state (rounding mode,
** flush-to-zero), which must stay with its context and not leak into the
** next one to run on the thread.
*/
#include "testutil.h"
#include "ctx.h"

#include <fenv.h>
#include <float.h>
#include <stdbool.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unwind.h>

#if defined(__SANITIZE_ADDRESS__)
# define TEST_ASAN 1
#elif defined(__has_feature)
# if __has_feature(address_sanitizer)
#  define TEST_ASAN 1
# endif
#endif
#if defined(__SANITIZE_THREAD__)
# define TEST_TSAN 1
#elif defined(__has_feature)
# if __has_feature(thread_sanitizer)
#  define TEST_TSAN 1
# endif
#endif
#ifdef TEST_ASAN
# include <sanitizer/asan_interface.h>
# include <sanitizer/common_interface_defs.h>
#endif
#ifdef TEST_TSAN
void *__tsan_get_current_fiber(void);
void *__tsan_create_fiber(unsigned flags);
void __tsan_destroy_fiber(void *fiber);
void __tsan_switch_to_fiber(void *fiber, unsigned flags);
#endif


/* ---- contexts with their own mapped stacks ---- */

typedef struct fiber {
  goro_ctx ctx;
  void *map;            /* the mapping, guard page included */
  size_t maplen;
  void *lo;             /* the usable stack */
  size_t size;
  void *fake;           /* ASan's fake-stack slot while switched out */
  void *tsan;           /* TSan's fiber */
} fiber;

enum { STACK_SIZE = 256 * 1024 };

static fiber main_f;    /* the test's own stack; bounds learnt under ASan */
static fiber *sw_from, *sw_to;

static void fiber_map(fiber *f, size_t size) {
  size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  memset(f, 0, sizeof *f);
  f->maplen = size + pg;
  f->map = mmap(NULL, f->maplen, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  assert_true(f->map != MAP_FAILED);
  assert_int_equal(mprotect(f->map, pg, PROT_NONE), 0);   /* guard page */
  f->lo = (char *)f->map + pg;
  f->size = size;
#ifdef TEST_TSAN
  f->tsan = __tsan_create_fiber(0);
#endif
}

static void fiber_make(fiber *f, size_t size, void (*entry)(void *), void *arg) {
  fiber_map(f, size);
  goro_ctx_init(&f->ctx, f->lo, f->size, entry, arg);
}

static void fiber_free(fiber *f) {
#ifdef TEST_ASAN
  /* Frames of a context that never returned leave poisoned shadow behind. */
  __asan_unpoison_memory_region(f->lo, f->size);
#endif
#ifdef TEST_TSAN
  __tsan_destroy_fiber(f->tsan);
#endif
  assert_int_equal(munmap(f->map, f->maplen), 0);
}

/*
** Every switch tells ASan which stack it goes to (start) and, once back,
** where it came from (finish); the main stack's bounds are learnt from the
** first finish that comes from it.  TSan is told which fiber runs next.
** Plain builds skip all of it.
*/
static void before_switch(fiber *from, fiber *to, bool dying) {
  sw_from = from;
  sw_to = to;
#ifdef TEST_ASAN
  __sanitizer_start_switch_fiber(dying ? NULL : &from->fake, to->lo, to->size);
#else
  (void)dying;
#endif
#ifdef TEST_TSAN
  if (main_f.tsan == NULL)
    main_f.tsan = __tsan_get_current_fiber();
  __tsan_switch_to_fiber(to->tsan, 0);
#endif
}

static void after_switch(void *fake) {
#ifdef TEST_ASAN
  const void *lo;
  size_t size;
  __sanitizer_finish_switch_fiber(fake, &lo, &size);
  if (sw_from->lo == NULL) {
    sw_from->lo = (void *)lo;
    sw_from->size = size;
  }
#else
  (void)fake;
#endif
}

static void sw(fiber *from, fiber *to) {
  before_switch(from, to, false);
  goro_ctx_switch(&from->ctx, &to->ctx);
  after_switch(from->fake);
}

/* The last switch out of a context that is never resumed. */
static _Noreturn void sw_exit(fiber *from, fiber *to) {
  before_switch(from, to, true);
  goro_ctx_switch(&from->ctx, &to->ctx);
  abort();
}

/* First thing in every entry. */
static fiber *started(void) {
  fiber *self = sw_to;
  after_switch(NULL);
  return self;
}

/* A failed cmocka assert longjmps to the main stack: not from a context.
** Contexts record failures; the test asserts there were none. */
static int nfail;
static char failmsg[256];
#define CHECK(c) do { \
    if (!(c) && nfail++ == 0) \
      snprintf(failmsg, sizeof failmsg, "line %d: %s", __LINE__, #c); \
  } while (0)
#define ASSERT_NO_CHECK_FAILED() do { \
    if (nfail) fail_msg("%d check(s) failed in a context, first at %s", \
                        nfail, failmsg); \
  } while (0)

static void begin(const char *name, unsigned seconds) {
  watchdog(name, seconds);
  nfail = 0;
  failmsg[0] = '\0';
}


/* ---- first entry: arg, alignment, and where backtraces stop ---- */

#define ENTRY_ARG ((void *)(uintptr_t)0x5eed1234abcdULL)

static void *got_arg;
static uintptr_t got_frame;
static uintptr_t got_local;
static char got_printf[32];
static int got_frames;

static void align_entry(void *arg) {
  _Alignas(16) volatile char local[16];
  fiber *self = started();
  local[0] = 1;
  got_arg = arg;
  got_frame = (uintptr_t)__builtin_frame_address(0);
  got_local = (uintptr_t)local;
  /* glibc's printf saves xmm registers with aligned stores when it gets a
  ** double: a misaligned entry stack crashes here. */
  snprintf(got_printf, sizeof got_printf, "%.2f", 2.5);
  sw_exit(self, &main_f);
}

static void test_first_entry(void **state) {
  (void)state;
  begin("test_first_entry", 10);
  /* Tops aligned, and off by 8 and by 5: goro_ctx_init aligns down. */
  static const size_t trim[] = {0, 8, 5};
  for (size_t i = 0; i < sizeof trim / sizeof trim[0]; i++) {
    fiber f;
    fiber_map(&f, STACK_SIZE);
    goro_ctx_init(&f.ctx, f.lo, f.size - trim[i], align_entry, ENTRY_ARG);
    uintptr_t lo = (uintptr_t)f.lo, hi = lo + f.size - trim[i];
    assert_true((uintptr_t)f.ctx.sp > lo && (uintptr_t)f.ctx.sp < hi);
    got_arg = NULL;
    got_frame = got_local = 0;
    got_printf[0] = '\0';
    sw(&main_f, &f);
    assert_ptr_equal(got_arg, ENTRY_ARG);
    assert_int_equal(got_frame % 16, 0);
    assert_true(got_frame > lo && got_frame < hi);
    assert_int_equal(got_local % 16, 0);
    assert_string_equal(got_printf, "2.50");
    fiber_free(&f);
  }
  watchdog_off();
}

/* The unwinder walks out of entry into the trampoline, whose return
** address is marked undefined: the walk must end there (end of stack),
** not go on reading return addresses above the top of the stack. */
static int got_unwind;

static _Unwind_Reason_Code count_frame(struct _Unwind_Context *uc, void *arg) {
  (void)uc;
  return ++*(int *)arg < 64 ? _URC_NO_REASON : _URC_NORMAL_STOP;
}

static void backtrace_entry(void *arg) {
  fiber *self = started();
  (void)arg;
  got_frames = 0;
  got_unwind = _Unwind_Backtrace(count_frame, &got_frames);
  sw_exit(self, &main_f);
}

static void test_backtrace_stops(void **state) {
  (void)state;
  begin("test_backtrace_stops", 10);
  fiber f;
  fiber_make(&f, STACK_SIZE, backtrace_entry, NULL);
  got_frames = -1;
  sw(&main_f, &f);
  assert_int_equal(got_unwind, _URC_END_OF_STACK);
  assert_in_range(got_frames, 2, 8);   /* entry, trampoline (and ASan's) */
  fiber_free(&f);
  watchdog_off();
}

/* An entry that returns aborts the process (in a child, then). */
static void returning_entry(void *arg) {
  (void)started();
  *(int *)arg = 1;
}

static void test_entry_return_aborts(void **state) {
  (void)state;
  begin("test_entry_return_aborts", 10);
  fflush(NULL);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    signal(SIGABRT, SIG_DFL);
    int ran = 0;
    fiber f;
    fiber_make(&f, STACK_SIZE, returning_entry, &ran);
    sw(&main_f, &f);
    _exit(ran ? 3 : 4);   /* not reached */
  }
  /* Bounded wait: a child that hangs is killed, not left behind. */
  int status;
  pid_t w;
  int64_t deadline = now_ns() + 5LL * test_slowdown() * 1000000000;
  while ((w = waitpid(pid, &status, WNOHANG)) == 0 && now_ns() < deadline) {
    struct timespec ms = {0, 1000000};
    nanosleep(&ms, NULL);
  }
  if (w == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    fail_msg("the child neither aborted nor exited in time");
  }
  assert_int_equal(w, pid);
  assert_true(WIFSIGNALED(status));
  assert_int_equal(WTERMSIG(status), SIGABRT);
  watchdog_off();
}


/* ---- integer (and aarch64 FP) callee-saved registers ---- */

/*
** test_regs_switch(from, to, in, out) loads in[] into every callee-saved
** register, calls goro_ctx_switch(from, to), and when resumed stores those
** registers into out[].  It is a whole function in asm because C cannot
** keep chosen values in callee-saved registers across a call (nor name the
** frame pointer as a clobber); it saves and restores its caller's registers
** itself, so to C it is an ordinary call.
*/
#if defined(__x86_64__)
/* rbx rbp r12 r13 r14 r15 */
enum { NREGS = 6 };
__asm__(
  "	.text\n"
  "	.globl test_regs_switch\n"
  "	.hidden test_regs_switch\n"
  "	.type test_regs_switch, @function\n"
  "	.p2align 4\n"
  "test_regs_switch:\n"          /* rdi from, rsi to, rdx in, rcx out */
  "	.cfi_startproc\n"
  "	pushq %rbp\n"
  "	.cfi_adjust_cfa_offset 8\n"
  "	.cfi_rel_offset %rbp, 0\n"
  "	pushq %rbx\n"
  "	.cfi_adjust_cfa_offset 8\n"
  "	.cfi_rel_offset %rbx, 0\n"
  "	pushq %r12\n"
  "	.cfi_adjust_cfa_offset 8\n"
  "	.cfi_rel_offset %r12, 0\n"
  "	pushq %r13\n"
  "	.cfi_adjust_cfa_offset 8\n"
  "	.cfi_rel_offset %r13, 0\n"
  "	pushq %r14\n"
  "	.cfi_adjust_cfa_offset 8\n"
  "	.cfi_rel_offset %r14, 0\n"
  "	pushq %r15\n"
  "	.cfi_adjust_cfa_offset 8\n"
  "	.cfi_rel_offset %r15, 0\n"
  "	pushq %rcx\n"                  /* 8 slots with the return address: aligned */
  "	.cfi_adjust_cfa_offset 8\n"
  "	movq 0(%rdx), %rbx\n"
  "	movq 8(%rdx), %rbp\n"
  "	movq 16(%rdx), %r12\n"
  "	movq 24(%rdx), %r13\n"
  "	movq 32(%rdx), %r14\n"
  "	movq 40(%rdx), %r15\n"
  "	call goro_ctx_switch@PLT\n"
  "	popq %rcx\n"
  "	.cfi_adjust_cfa_offset -8\n"
  "	movq %rbx, 0(%rcx)\n"
  "	movq %rbp, 8(%rcx)\n"
  "	movq %r12, 16(%rcx)\n"
  "	movq %r13, 24(%rcx)\n"
  "	movq %r14, 32(%rcx)\n"
  "	movq %r15, 40(%rcx)\n"
  "	popq %r15\n"
  "	popq %r14\n"
  "	popq %r13\n"
  "	popq %r12\n"
  "	popq %rbx\n"
  "	popq %rbp\n"
  "	.cfi_adjust_cfa_offset -48\n"
  "	ret\n"
  "	.cfi_endproc\n"
  "	.size test_regs_switch, .-test_regs_switch\n");
#elif defined(__aarch64__)
/* x19-x28, x29, then d8-d15 (as raw 64-bit patterns) */
enum { NREGS = 19 };
__asm__(
  "	.text\n"
  "	.globl test_regs_switch\n"
  "	.hidden test_regs_switch\n"
  "	.type test_regs_switch, %function\n"
  "	.p2align 4\n"
  "test_regs_switch:\n"          /* x0 from, x1 to, x2 in, x3 out */
  "	.cfi_startproc\n"
  "	stp x29, x30, [sp, #-176]!\n"
  "	.cfi_def_cfa_offset 176\n"
  "	.cfi_offset x29, -176\n"
  "	.cfi_offset x30, -168\n"
  "	stp x19, x20, [sp, #16]\n"
  "	stp x21, x22, [sp, #32]\n"
  "	stp x23, x24, [sp, #48]\n"
  "	stp x25, x26, [sp, #64]\n"
  "	stp x27, x28, [sp, #80]\n"
  "	stp d8, d9, [sp, #96]\n"
  "	stp d10, d11, [sp, #112]\n"
  "	stp d12, d13, [sp, #128]\n"
  "	stp d14, d15, [sp, #144]\n"
  "	str x3, [sp, #160]\n"
  "	ldp x19, x20, [x2, #0]\n"
  "	ldp x21, x22, [x2, #16]\n"
  "	ldp x23, x24, [x2, #32]\n"
  "	ldp x25, x26, [x2, #48]\n"
  "	ldp x27, x28, [x2, #64]\n"
  "	ldr x29, [x2, #80]\n"
  "	ldp d8, d9, [x2, #88]\n"
  "	ldp d10, d11, [x2, #104]\n"
  "	ldp d12, d13, [x2, #120]\n"
  "	ldp d14, d15, [x2, #136]\n"
  "	bl goro_ctx_switch\n"
  "	ldr x3, [sp, #160]\n"
  "	stp x19, x20, [x3, #0]\n"
  "	stp x21, x22, [x3, #16]\n"
  "	stp x23, x24, [x3, #32]\n"
  "	stp x25, x26, [x3, #48]\n"
  "	stp x27, x28, [x3, #64]\n"
  "	str x29, [x3, #80]\n"
  "	stp d8, d9, [x3, #88]\n"
  "	stp d10, d11, [x3, #104]\n"
  "	stp d12, d13, [x3, #120]\n"
  "	stp d14, d15, [x3, #136]\n"
  "	ldp x19, x20, [sp, #16]\n"
  "	ldp x21, x22, [sp, #32]\n"
  "	ldp x23, x24, [sp, #48]\n"
  "	ldp x25, x26, [sp, #64]\n"
  "	ldp x27, x28, [sp, #80]\n"
  "	ldp d8, d9, [sp, #96]\n"
  "	ldp d10, d11, [sp, #112]\n"
  "	ldp d12, d13, [sp, #128]\n"
  "	ldp d14, d15, [sp, #144]\n"
  "	ldp x29, x30, [sp], #176\n"
  "	.cfi_def_cfa_offset 0\n"
  "	ret\n"
  "	.cfi_endproc\n"
  "	.size test_regs_switch, .-test_regs_switch\n");
#else
# error "test_ctx.c: no register test for this architecture"
#endif

void test_regs_switch(goro_ctx *from, const goro_ctx *to,
                      const uint64_t *in, uint64_t *out);

static void regs_sw(fiber *from, fiber *to, const uint64_t *in, uint64_t *out) {
  before_switch(from, to, false);
  test_regs_switch(&from->ctx, &to->ctx, in, out);
  after_switch(from->fake);
}

/* Distinct per register, per context and per round. */
static void fill(uint64_t *v, unsigned who, unsigned round) {
  for (unsigned i = 0; i < NREGS; i++)
    v[i] = (0x0101010101010101ULL * (i + 1)) ^ ((uint64_t)who << 56) ^
           ((uint64_t)round << 24) ^ 0xa5;
}

enum { REG_ROUNDS = 50 };

static void regs_entry(void *arg) {
  fiber *self = started();
  uint64_t in[NREGS], out[NREGS];
  (void)arg;
  for (unsigned r = 0; r < REG_ROUNDS; r++) {
    fill(in, 2, r);
    memset(out, 0, sizeof out);
    regs_sw(self, &main_f, in, out);
    for (unsigned i = 0; i < NREGS; i++)
      CHECK(out[i] == in[i]);
  }
  sw_exit(self, &main_f);
}

static void test_callee_saved_regs(void **state) {
  (void)state;
  begin("test_callee_saved_regs", 10);
  fiber co;
  uint64_t in[NREGS], out[NREGS];
  fiber_make(&co, STACK_SIZE, regs_entry, NULL);
  /* One more than the context's rounds: the last resumes from its exit. */
  for (unsigned r = 0; r <= REG_ROUNDS; r++) {
    fill(in, 1, r);
    memset(out, 0, sizeof out);
    regs_sw(&main_f, &co, in, out);
    for (unsigned i = 0; i < NREGS; i++)
      if (out[i] != in[i])
        fail_msg("round %u: register %u is %#llx, expected %#llx", r, i,
                 (unsigned long long)out[i], (unsigned long long)in[i]);
  }
  ASSERT_NO_CHECK_FAILED();
  fiber_free(&co);
  watchdog_off();
}


/* ---- FP control state: rounding mode, flush-to-zero ---- */

#if defined(__x86_64__)
/* MXCSR: FTZ (bit 15) and DAZ (bit 6). */
# define FLUSH_BITS 0x8040u
static unsigned get_mxcsr(void) {
  unsigned m;
  __asm__ volatile("stmxcsr %0" : "=m"(m));
  return m;
}
static void set_mxcsr(unsigned m) { __asm__ volatile("ldmxcsr %0" : : "m"(m)); }
static unsigned flush_bits(void) { return get_mxcsr() & FLUSH_BITS; }
static void set_flush(bool on) {
  unsigned m = get_mxcsr();
  set_mxcsr(on ? m | FLUSH_BITS : m & ~FLUSH_BITS);
}
#elif defined(__aarch64__)
/* FPCR.FZ (bit 24) flushes inputs and results. */
# define FLUSH_BITS (1u << 24)
static uint64_t get_fpcr(void) {
  uint64_t v;
  __asm__ volatile("mrs %0, fpcr" : "=r"(v));
  return v;
}
static void set_fpcr(uint64_t v) { __asm__ volatile("msr fpcr, %0" : : "r"(v)); }
static unsigned flush_bits(void) { return (unsigned)(get_fpcr() & FLUSH_BITS); }
static void set_flush(bool on) {
  uint64_t v = get_fpcr();
  set_fpcr(on ? v | FLUSH_BITS : v & ~(uint64_t)FLUSH_BITS);
}
#endif

static bool is_zero(double d) {
  uint64_t bits;
  memcpy(&bits, &d, sizeof bits);
  return (bits << 1) == 0;   /* compare bits: with DAZ, a compare would lie */
}

/* Volatile operands keep the compiler from folding or reusing results
** across a change of mode. */
static double div13(void) {
  volatile double a = 1.0, b = 3.0;
  return a / b;
}
#if defined(__x86_64__)
static long double div13l(void) {   /* x87: rounds by the x87 control word */
  volatile long double a = 1.0L, b = 3.0L;
  return a / b;
}
#endif
/* Does the FPU flush a subnormal result, and a subnormal input, to zero? */
static bool flushes(void) {
  volatile double tiny = DBL_MIN, half = 0.5, sub = 0x1p-1030, two = 2.0;
  double r1 = tiny * half, r2 = sub * two;
  return is_zero(r1) && is_zero(r2);
}
static bool keeps_subnormals(void) {
  volatile double tiny = DBL_MIN, half = 0.5, sub = 0x1p-1030, two = 2.0;
  double r1 = tiny * half, r2 = sub * two;
  return !is_zero(r1) && !is_zero(r2);
}

typedef struct fpref {
  double up, down;
#if defined(__x86_64__)
  long double lup, ldown;
#endif
} fpref;
static fpref ref;

static void fp_reference(void) {
  assert_int_equal(fesetround(FE_UPWARD), 0);
  ref.up = div13();
#if defined(__x86_64__)
  ref.lup = div13l();
#endif
  assert_int_equal(fesetround(FE_DOWNWARD), 0);
  ref.down = div13();
#if defined(__x86_64__)
  ref.ldown = div13l();
  assert_true(ref.lup > ref.ldown);
#endif
  assert_true(ref.up > ref.down);
  assert_int_equal(fesetround(FE_TONEAREST), 0);
}

static void fp_restore(void) {
  fesetround(FE_TONEAREST);
  set_flush(false);
}

/* The state a context expects, checked with the context's own eyes. */
static bool fp_state_is(int mode, bool flush) {
  bool ok = fegetround() == mode &&
            flush_bits() == (flush ? FLUSH_BITS : 0) &&
            (flush ? flushes() : keeps_subnormals());
  double q = div13();
  ok = ok && q == (mode == FE_UPWARD ? ref.up : ref.down);
#if defined(__x86_64__)
  long double lq = div13l();
  ok = ok && lq == (mode == FE_UPWARD ? ref.lup : ref.ldown);
#endif
  return ok;
}

enum { FP_ROUNDS = 100 };

/* The context rounds up and flushes; main rounds down and does not. */
static void fp_entry(void *arg) {
  fiber *self = started();
  (void)arg;
  fesetround(FE_UPWARD);
  set_flush(true);
  for (unsigned r = 0; r < FP_ROUNDS; r++) {
    CHECK(fp_state_is(FE_UPWARD, true));
    sw(self, &main_f);
    CHECK(fp_state_is(FE_UPWARD, true));
  }
  sw_exit(self, &main_f);
}

static void test_fp_control_per_context(void **state) {
  (void)state;
  begin("test_fp_control_per_context", 10);
  fp_reference();
  fiber co;
  fiber_make(&co, STACK_SIZE, fp_entry, NULL);
  assert_int_equal(fesetround(FE_DOWNWARD), 0);
  set_flush(false);
  for (unsigned r = 0; r <= FP_ROUNDS; r++) {
    sw(&main_f, &co);
    if (!fp_state_is(FE_DOWNWARD, false)) {
      int mode = fegetround();
      unsigned fb = flush_bits();
      fp_restore();
      fail_msg("round %u: main's FP state changed (rounding %#x, flush "
               "bits %#x)", r, mode, fb);
    }
  }
  fp_restore();
  ASSERT_NO_CHECK_FAILED();
  fiber_free(&co);
  watchdog_off();
}

/* A fresh context starts with its creator's control state (as a new
** thread does), minus x86's sticky exception flags. */
static bool inherit_ok;
static unsigned inherit_flags;

static void inherit_entry(void *arg) {
#if defined(__x86_64__)
  inherit_flags = get_mxcsr() & 0x3f;
#else
  inherit_flags = 0;
#endif
  fiber *self = started();
  (void)arg;
  inherit_ok = fegetround() == FE_TOWARDZERO &&
               flush_bits() == FLUSH_BITS && flushes();
  fp_restore();
  sw_exit(self, &main_f);
}

static void test_fp_control_inherited(void **state) {
  (void)state;
  begin("test_fp_control_inherited", 10);
  fiber co;
  assert_int_equal(fesetround(FE_TOWARDZERO), 0);
  set_flush(true);
  (void)div13();                     /* raises "inexact" in main */
  fiber_make(&co, STACK_SIZE, inherit_entry, NULL);
  fp_restore();
  inherit_ok = false;
  inherit_flags = 0xff;
  sw(&main_f, &co);
  bool main_ok = fegetround() == FE_TONEAREST && flush_bits() == 0;
  fp_restore();
  assert_true(inherit_ok);
  assert_int_equal(inherit_flags, 0);
  assert_true(main_ok);
  fiber_free(&co);
  watchdog_off();
}


/* ---- many switches ---- */

static long pp_rounds, pp_main, pp_co;

static void pp_entry(void *arg) {
  fiber *self = started();
  (void)arg;
  for (long i = 0; i < pp_rounds; i++) {
    CHECK(pp_main == pp_co + 1);
    pp_co++;
    sw(self, &main_f);
  }
  sw_exit(self, &main_f);
}

static void test_ping_pong(void **state) {
  (void)state;
  begin("test_ping_pong", 20);
  pp_rounds = scaled(1000000) / 2;   /* two switches a round */
  pp_main = pp_co = 0;
  fiber co;
  fiber_make(&co, STACK_SIZE, pp_entry, NULL);
  for (long i = 0; i <= pp_rounds; i++) {
    pp_main++;
    sw(&main_f, &co);
    if (pp_co != (i < pp_rounds ? pp_main : pp_rounds))
      fail_msg("round %ld: context counted %ld, main %ld", i, pp_co, pp_main);
  }
  ASSERT_NO_CHECK_FAILED();
  assert_int_equal(pp_co, pp_rounds);
  assert_int_equal(pp_main, pp_rounds + 1);
  fiber_free(&co);
  watchdog_off();
}

/* N contexts in a ring, each switching to the next: the order of visits
** must be exactly 0, 1, ..., N-1, 0, 1, ... */
enum { RING = 100 };
static fiber ring[RING];
static long ring_rounds, ring_seq, ring_count[RING];

static void ring_entry(void *arg) {
  fiber *self = started();
  long me = (long)(intptr_t)arg;
  CHECK(self == &ring[me]);
  for (long r = 0; r < ring_rounds; r++) {
    CHECK(ring_seq == r * RING + me);
    ring_seq++;
    ring_count[me]++;
    fiber *next = me == RING - 1 ? (r == ring_rounds - 1 ? &main_f : &ring[0])
                                 : &ring[me + 1];
    if (r == ring_rounds - 1)
      sw_exit(self, next);
    sw(self, next);
  }
  CHECK(!"not reached");
  sw_exit(self, &main_f);
}

static void test_ring(void **state) {
  (void)state;
  begin("test_ring", 20);
  ring_rounds = scaled(2000);
  ring_seq = 0;
  for (long i = 0; i < RING; i++) {
    ring_count[i] = 0;
    fiber_make(&ring[i], 128 * 1024, ring_entry, (void *)(intptr_t)i);
  }
  sw(&main_f, &ring[0]);
  ASSERT_NO_CHECK_FAILED();
  assert_int_equal(ring_seq, ring_rounds * RING);
  for (long i = 0; i < RING; i++) {
    assert_int_equal(ring_count[i], ring_rounds);
    fiber_free(&ring[i]);
  }
  watchdog_off();
}


int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_first_entry),
    cmocka_unit_test(test_backtrace_stops),
    cmocka_unit_test(test_entry_return_aborts),
    cmocka_unit_test(test_callee_saved_regs),
    cmocka_unit_test(test_fp_control_per_context),
    cmocka_unit_test(test_fp_control_inherited),
    cmocka_unit_test(test_ping_pong),
    cmocka_unit_test(test_ring),
  };
  return goro_run_tests(tests);
}
