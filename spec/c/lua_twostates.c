/*
** lua_twostates.c — a C host running two Lua states that both use goro,
** each on a thread of its own: closing one must leave the other whole.
**
** The runtime is the process's and both states share it; each state's
** close ends its own goroutines only (lgoro.c, universe_gc).  Each case
** runs in a child process (the last act of a case is often a deadlock,
** which exits), with a watchdog.  The states talk to the host through a
** preloaded module `host`: host.mark(name) sets a flag, host.marked(name)
** reads it, so that one state can wait for the other's close without
** blocking its thread.
**
** Built against the module's objects (mk/lua.mk), with goro registered in
** package.preload, and run by `make test-lua` for every variant.
*/
#include "testutil.h"

#include <fcntl.h>
#include <pthread.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

int luaopen_goro(lua_State *L);


/*
** {======================================================
** The host
** =======================================================
*/

static pthread_mutex_t marks_lock = PTHREAD_MUTEX_INITIALIZER;
static char marks[16][32];
static int nmarks;

static void host_mark_c(const char *name) {
  pthread_mutex_lock(&marks_lock);
  if (nmarks < 16)
    snprintf(marks[nmarks++], sizeof marks[0], "%s", name);
  pthread_mutex_unlock(&marks_lock);
}

static int host_mark(lua_State *L) {
  host_mark_c(luaL_checkstring(L, 1));
  return 0;
}

static bool marked(const char *name) {
  pthread_mutex_lock(&marks_lock);
  bool found = false;
  for (int i = 0; i < nmarks && !found; i++)
    found = strcmp(marks[i], name) == 0;
  pthread_mutex_unlock(&marks_lock);
  return found;
}

static int host_marked(lua_State *L) {
  lua_pushboolean(L, marked(luaL_checkstring(L, 1)));
  return 1;
}

static int open_host(lua_State *L) {
  static const luaL_Reg funcs[] = {
    {"mark", host_mark}, {"marked", host_marked}, {NULL, NULL}
  };
  luaL_newlib(L, funcs);
  return 1;
}

/* TSan runs a signal handler only at the thread's next intercepted call,
** which a busy Lua loop never makes: no preemption of one there. */
#if defined(__SANITIZE_THREAD__)
static const bool can_preempt_busy_lua = false;
#else
static const bool can_preempt_busy_lua = true;
#endif

typedef struct state_run {
  const char *name;           /* "A" or "B", the global NAME */
  const char *code;
  bool close_then_linger;     /* after lua_close, stay alive until "end" */
} state_run;

/* Run one state on this thread: its code, then lua_close.  An error is
** printed and fails the case (exit 3).  Then "<name> closed" is marked. */
static void *run_state(void *arg) {
  state_run *r = arg;
  lua_State *L = luaL_newstate();
  luaL_openlibs(L);
  luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
  lua_pushcfunction(L, luaopen_goro);
  lua_setfield(L, -2, "goro");
  lua_pushcfunction(L, open_host);
  lua_setfield(L, -2, "host");
  lua_pop(L, 1);
  lua_pushstring(L, r->name);
  lua_setglobal(L, "NAME");
  lua_pushboolean(L, can_preempt_busy_lua);
  lua_setglobal(L, "PREEMPTS");
  if (luaL_loadstring(L, r->code) != LUA_OK ||
      lua_pcall(L, 0, 0, 0) != LUA_OK) {
    fprintf(stderr, "state %s: %s\n", r->name, lua_tostring(L, -1));
    fflush(stderr);
    _exit(3);
  }
  lua_close(L);
  char done[32];
  snprintf(done, sizeof done, "%s closed", r->name);
  host_mark_c(done);
  /* The thread lives on without goro: it must not count as one that
  ** could still wake a goroutine. */
  while (r->close_then_linger && !marked("end"))
    usleep(1000);
  return NULL;
}

/* In a child process: run A and B on two threads; exit 0 (with exit(),
** so that LeakSanitizer looks) once both states are closed.  A state that
** exits the process (a deadlock) decides the status.  The parent gets the
** status and stderr. */
static int run_pair(const char *a, const char *b, char *err, size_t errsize) {
  char path[] = "/tmp/goro-twostates-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  unlink(path);
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  assert_true(pid >= 0);
  if (pid == 0) {
    dup2(fd, 2);
    signal(SIGALRM, SIG_DFL);   /* a hang: killed by it, status 128+14 */
    alarm(60 * (unsigned)test_slowdown());
    setenv("GORO_MAXPROCS", "1", 1);
    static state_run ra, rb;
    ra = (state_run){ "A", a, true };
    rb = (state_run){ "B", b, true };
    pthread_t ta, tb;
    pthread_create(&ta, NULL, run_state, &ra);
    pthread_create(&tb, NULL, run_state, &rb);
    while (!marked("A closed") || !marked("B closed"))
      usleep(1000);
    host_mark_c("end");
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    exit(0);
  }
  int status;
  assert_int_equal(waitpid(pid, &status, 0), pid);
  ssize_t n = pread(fd, err, errsize - 1, 0);
  err[n > 0 ? n : 0] = '\0';
  close(fd);
  if (WIFSIGNALED(status))
    return 128 + WTERMSIG(status);
  return WEXITSTATUS(status);
}

/* }====================================================== */


/*
** {======================================================
** The scripts
** =======================================================
*/

/* The state that closes: goroutines parked on everything goro has, one
** runnable, then its chunk ends and the host closes it. */
static const char closer[] =
  "local go = require 'goro'\n"
  "local host = require 'host'\n"
  "local OTHER = NAME == 'A' and 'B' or 'A'\n"
  "local never, parked = go.chan(), go.chan(100)\n"
  "local mu, wg = go.mutex(), go.waitgroup()\n"
  "mu:lock(); wg:add(1)\n"
  "local bodies = {\n"
  "  function() never:recv() end,\n"
  "  function() never:send(1) end,\n"
  "  function() go.select{never, {never, 1}, go.after(1000)} end,\n"
  "  function() go.select{} end,\n"
  "  function() go.wait() end,\n"
  "  function() mu:lock() end,\n"
  "  function() wg:wait() end,\n"
  "  function() go.sleep(0.2) end,\n"
  "  function() local t = go.ticker(0.005); while true do t.c:recv() end end,\n"
  "  function() local co = coroutine.wrap(function() never:recv() end); co() end,\n"
  "  function() table.sort({3, 2, 1}, function(a, b) never:recv() end) end,\n"
  "}\n"
  "if PREEMPTS then bodies[#bodies + 1] = function() while true do end end end\n"
  "for _, f in ipairs(bodies) do\n"
  "  go(function() parked:send(1); f() end)\n"
  "end\n"
  "for _ in ipairs(bodies) do parked:recv() end\n"
  "host.mark(NAME .. ' ready')\n"
  "for i = 1, 10000 do\n"
  "  if host.marked(OTHER .. ' ready') then break end\n"
  "  go.sleep(0.005)\n"
  "end\n"
  "go.sleep(0.02)\n";

/* The state that lives on: busy while the other closes, then everything
** once more, then a deadlock that must be reported. */
static const char survivor[] =
  "local go = require 'goro'\n"
  "local host = require 'host'\n"
  "local OTHER = NAME == 'A' and 'B' or 'A'\n"
  "host.mark(NAME .. ' ready')\n"
  "local stop, pp = false, go.chan()\n"
  "go(function() while not stop do pp:send(1) end pp:close() end)\n"
  "local rounds = 0\n"
  "while not host.marked(OTHER .. ' closed') do\n"
  "  pp:recv(); rounds = rounds + 1\n"
  "  if rounds % 1000 == 0 then go.sleep(0.001) end\n"
  "end\n"
  "stop = true\n"
  "for _ in pp:iter() do end\n"
  /* goroutines and channels */
  "local results, sum = go.chan(10), 0\n"
  "for i = 1, 1000 do go(function(i) results:send(i) end, i) end\n"
  "for i = 1, 1000 do sum = sum + results:recv() end\n"
  "assert(sum == 500500, 'sum ' .. sum)\n"
  /* timers */
  "local t0 = go.now(); go.sleep(0.02)\n"
  "assert(go.now() - t0 >= 0.02, 'woke early')\n"
  "assert(go.select{go.chan(), go.after(0.01)} == 2)\n"
  /* preemption: one P, a goroutine that never yields */
  "if PREEMPTS then\n"
  "  local spin, c = true, go.chan()\n"
  "  go(function() while spin do end end)\n"
  "  go(function() c:send('ran'); spin = false end)\n"
  "  assert(c:recv() == 'ran')\n"
  "end\n"
  "go.wait()\n"
  "assert(go.numgoroutine() == 0, 'goroutines left: ' .. go.numgoroutine())\n"
  "io.stderr:write(NAME, ' ok\\n')\n"
  /* deadlock detection: nothing can ever send */
  "go.chan():recv()\n"
  "io.stderr:write('not reported\\n')\n";

/* }====================================================== */


static void expect_survivor(const char *err, const char *name) {
  char ok[16];
  snprintf(ok, sizeof ok, "%s ok\n", name);
  if (strstr(err, ok) == NULL ||
      strstr(err, "fatal error: all goroutines are asleep - deadlock!") == NULL) {
    fprintf(stderr, "child's stderr:\n%s\n", err);
    fail();
  }
}

static char errbuf[1 << 16];

/* B lives on while A closes with its goroutines parked. */
static void test_close_a_b_lives(void **state) {
  (void)state;
  watchdog("test_close_a_b_lives", 90);
  int rc = run_pair(closer, survivor, errbuf, sizeof errbuf);
  if (rc != 2) fprintf(stderr, "status %d, stderr:\n%s\n", rc, errbuf);
  assert_int_equal(rc, 2);
  expect_survivor(errbuf, "B");
  watchdog_off();
}

/* The same the other way round: the first state to require goro is not
** special. */
static void test_close_b_a_lives(void **state) {
  (void)state;
  watchdog("test_close_b_a_lives", 90);
  int rc = run_pair(survivor, closer, errbuf, sizeof errbuf);
  if (rc != 2) fprintf(stderr, "status %d, stderr:\n%s\n", rc, errbuf);
  assert_int_equal(rc, 2);
  expect_survivor(errbuf, "A");
  watchdog_off();
}

/* Both close with goroutines parked: the last one stops the runtime, and
** nothing leaks (LeakSanitizer runs at the child's exit). */
static void test_both_close(void **state) {
  (void)state;
  watchdog("test_both_close", 90);
  int rc = run_pair(closer, closer, errbuf, sizeof errbuf);
  if (rc != 0) fprintf(stderr, "status %d, stderr:\n%s\n", rc, errbuf);
  assert_int_equal(rc, 0);
  watchdog_off();
}

int main(void) {
  const struct CMUnitTest tests[] = {
    cmocka_unit_test(test_close_a_b_lives),
    cmocka_unit_test(test_close_b_a_lives),
    cmocka_unit_test(test_both_close),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
