/*
** ltime.c — go.now, go.sleep, go.after, go.timer and go.ticker, on the
** poller's timers (netpoll/).
**
** A timer sends go.now() on a channel of capacity 1 with a non-blocking
** send, from the poller's thread, as Go's runtime does: a ticker whose
** receiver is slow drops ticks.  The value is a number, so the send needs
** nothing of the Lua state.  The channel owns the timer: when it is
** collected the timer is freed, and no send can race with that.
**
** A timer object (go.timer, go.ticker) is a userdata whose user value is
** its channel.  The channel may be finalised while the timer object is
** still reachable: at lua_close every finaliser runs, and one that stops a
** timer may run after the timer's channel was finalised.  The timer is
** gone then: t:stop() returns false (nothing was pending), t:reset()
** raises.
**
** Durations: NaN raises; zero, negative and -0.0 mean now; anything above
** MAXSECONDS (math.huge too) is clamped to it, as good as never, so that
** the conversion to nanoseconds cannot overflow.
*/
#include <math.h>

#include "lgoro.h"

#define LGORO_TIMER "goro.timer"

#define MAXSECONDS 9e9   /* ~285 years: 9e18 ns, below INT64_MAX */

static int64_t checkduration(lua_State *L, int arg) {
  lua_Number s = luaL_checknumber(L, arg);
  luaL_argcheck(L, !isnan(s), arg, "not a number");
  if (!(s > 0))
    return 0;
  if (s > MAXSECONDS)
    s = MAXSECONDS;
  return (int64_t)(s * 1e9);
}

/* go.now() -> seconds (monotonic) */
static int l_now(lua_State *L) {
  lua_pushnumber(L, (lua_Number)goro_now() / 1e9);
  return 1;
}

static int noresults(lua_State *L, LG *lg, int rc) {
  (void)L; (void)lg; (void)rc;
  return 0;
}

/* go.sleep(seconds) */
static int l_sleep(lua_State *L) {
  int64_t ns = checkduration(L, 1);
  LG *lg = lgoro_current(L);
  if (ns == 0)
    return 0;
  lg->ns = ns;
  return lgoro_block(L, lg, OP_SLEEP, noresults);
}

/* On the poller's thread: the tick. */
static void send_now(void *ud, int64_t now) {
  lvalue v = { .u.n = (lua_Number)now / 1e9, .tag = LV_NUM };
  goro_chan_trysend(ud, &v);
}

/* A channel of capacity 1 with a timer sending to it; pushed. */
static LChan *timerchan(lua_State *L, int64_t ns, int64_t period) {
  Universe *U = lgoro_universe(L);
  lgoro_ensure_runtime(L, U);
  LChan *ch = lgoro_newchan(L, 1);
  ch->timer = goro_timer_start(ns, period, send_now, ch->c);
  if (ch->timer == NULL)
    luaL_error(L, "goro: cannot start a timer");
  return ch;
}

/* go.after(seconds) -> ch */
static int l_after(lua_State *L) {
  timerchan(L, checkduration(L, 1), 0);
  return 1;
}

/* The timer of timer object `self`, or NULL once its channel was
** finalised. */
static goro_timer *checktimer(lua_State *L) {
  luaL_checkudata(L, 1, LGORO_TIMER);
  lua_getiuservalue(L, 1, 1);
  LChan *ch = luaL_testudata(L, -1, LGORO_CHAN);
  lua_pop(L, 1);   /* the timer object keeps it */
  return ch && ch->c ? ch->timer : NULL;
}

static void newtimer(lua_State *L, int64_t ns, int64_t period) {
  lua_newuserdatauv(L, 1, 1);
  timerchan(L, ns, period);
  lua_setiuservalue(L, -2, 1);
  luaL_setmetatable(L, LGORO_TIMER);
}

/* go.timer(seconds) -> t */
static int l_timer(lua_State *L) {
  newtimer(L, checkduration(L, 1), 0);
  return 1;
}

/* go.ticker(seconds) -> t */
static int l_ticker(lua_State *L) {
  int64_t ns = checkduration(L, 1);
  luaL_argcheck(L, ns > 0 || luaL_checknumber(L, 1) > 0, 1,
                "non-positive interval for ticker");
  if (ns == 0)
    ns = 1;   /* positive, below a nanosecond */
  newtimer(L, ns, ns);
  return 1;
}

/* t:stop() -> true if it stopped a pending timer */
static int timer_stop(lua_State *L) {
  goro_timer *t = checktimer(L);
  lua_pushboolean(L, t != NULL && goro_timer_stop(t));
  return 1;
}

/* t:reset(seconds) -> true if the timer was pending */
static int timer_reset(lua_State *L) {
  goro_timer *t = checktimer(L);
  int64_t ns = checkduration(L, 2);
  if (t == NULL)
    return luaL_error(L, "goro: timer used after it was finalised");
  lua_pushboolean(L, goro_timer_reset(t, ns));
  return 1;
}

/* t.c, and the methods */
static int timer_index(lua_State *L) {
  luaL_checkudata(L, 1, LGORO_TIMER);
  const char *k = luaL_checkstring(L, 2);
  if (k[0] == 'c' && k[1] == '\0') {
    lua_getiuservalue(L, 1, 1);
    return 1;
  }
  lua_getmetatable(L, 1);
  lua_getfield(L, -1, k);
  return 1;
}

void lgoro_open_time(lua_State *L, Universe *U) {
  static const luaL_Reg funcs[] = {
    {"now", l_now},
    {"sleep", l_sleep},
    {"after", l_after},
    {"timer", l_timer},
    {"ticker", l_ticker},
    {NULL, NULL}
  };
  luaL_newmetatable(L, LGORO_TIMER);
  lua_pushcfunction(L, timer_stop);
  lua_setfield(L, -2, "stop");
  lua_pushcfunction(L, timer_reset);
  lua_setfield(L, -2, "reset");
  lua_pushcfunction(L, timer_index);
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
  lua_pushlightuserdata(L, U);
  luaL_setfuncs(L, funcs, 1);
}
