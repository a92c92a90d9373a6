/*
** lchan.c — channels and select for Lua: values in 16 bytes, channel
** objects, go.chan and go.select.
**
** A channel object is a userdata (LChan) owning a goro_chan.  Every
** function of the object checks its `self` by comparing metatables with
** the channel metatable, which each of them holds as upvalue 2: anything
** else (another goro object, io.stdout, a table) raises an argument error.
**
** The collector may finalise a channel object that Lua can still reach:
** a finaliser that ran earlier in the same cycle may have stored it
** somewhere (resurrection), and Lua code may call __gc itself.  __gc
** therefore leaves the object inert, c == NULL: every later use raises
** "goro: channel used after it was finalised", a second __gc does nothing.
** The goro_chan itself is freed at once unless someone may still wait on
** it (then lgoro_orphan keeps it until the runtime stops).
**
** A select refers to its channels by goro_chan pointers, which Lua does
** not see: for as long as it runs (and blocks) it keeps each channel
** object on its own Lua stack, so that neither changing the case table
** nor a collection frees a channel (or the timer behind a go.after) it
** waits on.  Values to send are anchored by their lvalue (lvalue_from).
**
** The results functions run after the operation, and push values: a push
** may allocate, and the allocation may run a finaliser that does channel
** work on this same goroutine, overwriting its scratch state (lg->val,
** lg->ok, lg->cases, ...).  So they copy what they need into locals first,
** and l_select fills its own local buffer pointers, not lg's, until it
** blocks.
*/
#include <stdlib.h>
#include <string.h>

#include "lgoro.h"


/*
** {======================================================
** Values
** =======================================================
*/

/* Store the value at idx (not nil) into v.  Every type is accepted;
** what does not fit inline is anchored in the registry. */
void lvalue_from(lua_State *L, int idx, lvalue *v) {
  memset(v, 0, sizeof *v);
  switch (lua_type(L, idx)) {
    case LUA_TBOOLEAN:
      v->tag = lua_toboolean(L, idx) ? LV_TRUE : LV_FALSE;
      return;
    case LUA_TNUMBER:
      if (lua_isinteger(L, idx)) {
        v->u.i = lua_tointeger(L, idx);
        v->tag = LV_INT;
      } else {
        v->u.n = lua_tonumber(L, idx);
        v->tag = LV_NUM;
      }
      return;
    case LUA_TLIGHTUSERDATA:
      v->u.p = lua_touserdata(L, idx);
      v->tag = LV_LIGHT;
      return;
    case LUA_TSTRING: {
      size_t len;
      const char *s = lua_tolstring(L, idx, &len);
      if (len <= 15) {
        memcpy((char *)v, s, len);
        v->tag = (uint8_t)(LV_STR + len);
        return;
      }
      break;
    }
    case LUA_TNIL:
      return;
    default:
      break;
  }
  lua_pushvalue(L, idx);
  v->u.ref = luaL_ref(L, LUA_REGISTRYINDEX);
  v->tag = LV_REF;
}

/* Push v and release what it holds. */
void lvalue_push(lua_State *L, lvalue *v) {
  switch (v->tag) {
    case LV_NIL: lua_pushnil(L); break;
    case LV_FALSE: lua_pushboolean(L, 0); break;
    case LV_TRUE: lua_pushboolean(L, 1); break;
    case LV_INT: lua_pushinteger(L, v->u.i); break;
    case LV_NUM: lua_pushnumber(L, v->u.n); break;
    case LV_LIGHT: lua_pushlightuserdata(L, v->u.p); break;
    case LV_REF:
      lua_rawgeti(L, LUA_REGISTRYINDEX, v->u.ref);
      luaL_unref(L, LUA_REGISTRYINDEX, v->u.ref);
      break;
    default:
      lua_pushlstring(L, (const char *)v, (size_t)(v->tag - LV_STR));
      break;
  }
  v->tag = LV_NIL;
}

void lvalue_release(lua_State *L, lvalue *v) {
  if (v->tag == LV_REF)
    luaL_unref(L, LUA_REGISTRYINDEX, v->u.ref);
  v->tag = LV_NIL;
}

/* }====================================================== */


/*
** {======================================================
** Channel objects
** =======================================================
*/

static const char finalised[] = "goro: channel used after it was finalised";

/* The channel object at idx, or NULL; `mt` is the index of the channel
** metatable (a pointer comparison, not luaL_testudata's registry lookup). */
static LChan *testlchan(lua_State *L, int idx, int mt) {
  LChan *ch = lua_touserdata(L, idx);
  if (ch == NULL || !lua_getmetatable(L, idx))
    return NULL;
  bool same = lua_rawequal(L, -1, mt);
  lua_pop(L, 1);
  return same ? ch : NULL;
}

/* The channel object argument `arg` of a function whose upvalue 2 is the
** channel metatable; finalised or not. */
static LChan *checklchan(lua_State *L, int arg) {
  LChan *ch = testlchan(L, arg, lua_upvalueindex(2));
  if (ch == NULL)
    luaL_typeerror(L, arg, LGORO_CHAN);
  return ch;
}

/* The live channel `self` of a method. */
static goro_chan *checkself(lua_State *L) {
  LChan *ch = checklchan(L, 1);
  if (ch->c == NULL)
    luaL_error(L, finalised);
  return ch->c;
}

/* For the other files: a registry lookup, as they have no upvalue. */
goro_chan *lgoro_checkchan(lua_State *L, int idx) {
  LChan *ch = luaL_checkudata(L, idx, LGORO_CHAN);
  if (ch->c == NULL)
    luaL_error(L, finalised);
  return ch->c;
}

/* The channel at idx, or NULL if it is not a live channel object. */
static goro_chan *testchan(lua_State *L, int idx, int mt) {
  LChan *ch = testlchan(L, idx, mt);
  return ch ? ch->c : NULL;
}

LChan *lgoro_newchan(lua_State *L, size_t cap) {
  /* Made during lua_close (by a late finaliser), its __gc would never
  ** run: Lua marks no new object for finalisation then. */
  if (lgoro_closing(L, lgoro_universe(L)))
    luaL_error(L, "goro: the Lua state is closing");
  LChan *ch = lua_newuserdatauv(L, sizeof *ch, 0);
  memset(ch, 0, sizeof *ch);
  luaL_setmetatable(L, LGORO_CHAN);
  ch->c = goro_chan_new(sizeof(lvalue), cap);
  if (ch->c == NULL)
    luaL_error(L, "goro: out of memory");
  return ch;
}

/* go.chan([cap]) */
static int l_chan(lua_State *L) {
  lua_Integer cap = luaL_optinteger(L, 1, 0);
  luaL_argcheck(L, cap >= 0 && cap <= (1 << 30), 1, "capacity out of range");
  lgoro_newchan(L, (size_t)cap);
  return 1;
}

/*
** Free c, a channel that Lua will not use again, unless someone may still
** wait on it: a goroutine in its queues, or the main thread, which gives
** up the token before it enqueues itself (lblock.c), so that a finaliser
** run meanwhile by a goroutine sees its coming wait only in U->main.  (At
** lua_close, or after a __gc called by hand on a live channel.)  Such a
** channel is kept by the universe, which lets go of it when it closes.
** (A goroutine's wait holds a reference of its own: goro_chan_free.)
*/
void lgoro_chan_dispose(Universe *U, goro_chan *c) {
  const LG *m = &U->main;
  bool used = goro_chan_waiting(c);
  if ((m->op == OP_SEND || m->op == OP_RECV) && m->c == c)
    used = true;
  if (m->op == OP_SELECT)
    for (int i = 0; i < m->ncases; i++)
      if (m->cases[i].c == c)
        used = true;
  if (used)
    lgoro_orphan(U, c);
  else
    goro_chan_free(c);
}

/* __gc: values still buffered give back their references; the object is
** inert from now on (see the top of the file). */
static int chan_gc(lua_State *L) {
  LChan *ch = checklchan(L, 1);
  goro_chan *c = ch->c;
  if (c == NULL)
    return 0;
  ch->c = NULL;
  goro_timer_free(ch->timer);   /* no send from it after this */
  ch->timer = NULL;
  lvalue v;
  bool ok;
  while (goro_chan_tryrecv(c, &v, &ok) == GORO_OK && ok)
    lvalue_release(L, &v);
  lgoro_chan_dispose(lgoro_universe(L), c);
  return 0;
}

static int send_results(lua_State *L, LG *lg, int rc) {
  if (rc == GORO_ECLOSED) {
    lvalue_release(L, &lg->val);
    return luaL_error(L, "send on closed channel");
  }
  return 0;
}

/* ch:send(v) */
static int chan_send(lua_State *L) {
  goro_chan *c = checkself(L);
  luaL_argexpected(L, !lua_isnoneornil(L, 2), 2, "non-nil value");
  LG *lg = lgoro_current(L);
  lvalue v;
  lvalue_from(L, 2, &v);
  int rc = goro_chan_trysend(c, &v);
  if (rc != GORO_EAGAIN) {
    lg->val = v;
    return send_results(L, lg, rc);
  }
  lg->c = c;
  lg->val = v;
  return lgoro_block(L, lg, OP_SEND, send_results);
}

/* Push v, and ok unless the caller returns v alone (nresults 1): copies,
** as pushing may run a finaliser that receives on this goroutine (see the
** top of the file). */
static int push_received(lua_State *L, lvalue v, bool ok, int nresults) {
  lvalue_push(L, &v);
  if (nresults > 1)
    lua_pushboolean(L, ok);
  return nresults;
}

static int recv_results(lua_State *L, LG *lg, int rc) {
  (void)rc;
  lvalue v = lg->val;
  lg->val.tag = LV_NIL;
  return push_received(L, v, lg->ok, 2);
}

/* ch:recv() -> v, ok */
static int chan_recv(lua_State *L) {
  goro_chan *c = checkself(L);
  LG *lg = lgoro_current(L);
  lvalue v;
  bool ok;
  if (goro_chan_tryrecv(c, &v, &ok) == GORO_OK)
    return push_received(L, v, ok, 2);
  lg->c = c;
  return lgoro_block(L, lg, OP_RECV, recv_results);
}

static int chan_close(lua_State *L) {
  goro_chan *c = checkself(L);
  if (goro_chan_close(c) == GORO_ECLOSED)
    return luaL_error(L, "close of closed channel");
  return 0;
}

/* ch:len(), and #ch */
static int chan_len(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)goro_chan_len(checkself(L)));
  return 1;
}

static int chan_cap(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)goro_chan_cap(checkself(L)));
  return 1;
}

static int iter_results(lua_State *L, LG *lg, int rc) {
  (void)rc;
  lvalue v = lg->val;
  lg->val.tag = LV_NIL;
  return push_received(L, v, false, 1);   /* nil once closed and drained */
}

/* The iterator of ch:iter(): called as f(ch). */
static int chan_iter_next(lua_State *L) {
  goro_chan *c = checkself(L);
  LG *lg = lgoro_current(L);
  lvalue v;
  bool ok;
  if (goro_chan_tryrecv(c, &v, &ok) == GORO_OK)
    return push_received(L, v, ok, 1);
  lg->c = c;
  return lgoro_block(L, lg, OP_RECV, iter_results);
}

/* for v in ch:iter() do ... end; upvalue 3 is the iterator. */
static int chan_iter(lua_State *L) {
  checkself(L);
  lua_pushvalue(L, lua_upvalueindex(3));
  lua_pushvalue(L, 1);
  return 2;
}

/* Also for a finalised channel: tostring is for error messages. */
static int chan_tostring(lua_State *L) {
  LChan *ch = checklchan(L, 1);
  if (ch->c == NULL)
    lua_pushfstring(L, "goro.chan (finalised): %p", (void *)ch);
  else
    lua_pushfstring(L, "goro.chan(%d): %p", (int)goro_chan_cap(ch->c), (void *)ch->c);
  return 1;
}

/* }====================================================== */


/*
** {======================================================
** select
** =======================================================
*/

enum { MAXCASES = 65535 };

static int select_error(lua_State *L, const char *fmt, int i, const char *s) {
  lua_pushfstring(L, fmt, i, s);
  return luaL_error(L, "bad argument #1 to 'select' (%s)", lua_tostring(L, -1));
}

/* Room for n cases: lg's own buffers when free, else (a select inside a
** finaliser that interrupted a select) a userdata left on the stack. */
static void selbuf_get(lua_State *L, LG *lg, int n, goro_select_case **cases,
                       lvalue **vals) {
  selbuf *b = &lg->sel;
  if (!b->busy) {
    if (b->cap < n) {
      int cap = n < 8 ? 8 : n;
      void *p = realloc(b->cases, (size_t)cap * (sizeof(goro_select_case) + sizeof(lvalue)));
      if (p == NULL)
        luaL_error(L, "goro: out of memory");
      b->cases = p;
      b->cap = cap;
    }
    b->vals = (lvalue *)(b->cases + b->cap);
    b->busy = true;
    *cases = b->cases;
    *vals = b->vals;
  } else {
    goro_select_case *p = lua_newuserdatauv(L, (size_t)n * (sizeof *p + sizeof(lvalue)), 0);
    *cases = p;
    *vals = (lvalue *)(p + n);
  }
}

static void selbuf_put(LG *lg, goro_select_case *cases) {
  if (cases == lg->sel.cases)
    lg->sel.busy = false;
}

/* After a select: release the values of the sends that did not happen. */
static void release_unsent(lua_State *L, goro_select_case *cases, lvalue *vals,
                           int n, int except) {
  for (int i = 0; i < n; i++)
    if (i != except && cases[i].c && cases[i].dir == GORO_SELECT_SEND)
      lvalue_release(L, &vals[i]);
}

/* The results of a select whose buffers are cases and vals: everything
** is read, and the buffers given back, before anything is pushed. */
static int select_finish(lua_State *L, LG *lg, goro_select_case *cases,
                         lvalue *vals, int n, int chosen, int rc) {
  if (rc == GORO_EAGAIN) {             /* default: nothing was ready */
    release_unsent(L, cases, vals, n, -1);
    selbuf_put(lg, cases);
    lua_pushnil(L);
    return 1;
  }
  release_unsent(L, cases, vals, n, rc == GORO_OK ? chosen : -1);
  int dir = cases[chosen].dir;
  bool ok = cases[chosen].ok;
  lvalue v = vals[chosen];
  selbuf_put(lg, cases);
  if (rc == GORO_ECLOSED)
    return luaL_error(L, "send on closed channel");
  lua_pushinteger(L, chosen + 1);
  if (dir == GORO_SELECT_SEND)
    return 1;
  return push_received(L, v, ok, 3);
}

static int select_results(lua_State *L, LG *lg, int rc) {
  return select_finish(L, lg, lg->cases, lg->vals, lg->ncases, lg->chosen, rc);
}

/* The number of cases: #cases, an integer from 0 to MAXCASES. */
static int ncases(lua_State *L) {
  lua_len(L, 1);
  int isint;
  lua_Integer n = lua_tointegerx(L, -1, &isint);
  lua_pop(L, 1);
  if (!isint)
    luaL_error(L, "bad argument #1 to 'select' (the length of the case table "
                  "is not an integer)");
  if (n < 0)
    luaL_error(L, "bad argument #1 to 'select' (negative length of the case "
                  "table: %I)", n);
  if (n > MAXCASES)
    luaL_error(L, "bad argument #1 to 'select' (too many cases: %I, at most %d)",
               n, MAXCASES);
  return (int)n;
}

/* The option `default`: a boolean, or nil. */
static bool blocks(lua_State *L) {
  int t = lua_getfield(L, 1, "default");
  if (t != LUA_TNIL && t != LUA_TBOOLEAN)
    luaL_error(L, "bad option 'default' to 'select' (boolean expected, got %s)",
               luaL_typename(L, -1));
  bool block = !lua_toboolean(L, -1);
  lua_pop(L, 1);
  return block;
}

/* Every key is a case's index or an option: any other is a mistake
** (a misspelt option, a case past a hole that # does not count). */
static void checkkeys(lua_State *L, int n) {
  lua_pushnil(L);
  while (lua_next(L, 1)) {
    lua_pop(L, 1);
    if (lua_isinteger(L, -1)) {
      lua_Integer k = lua_tointeger(L, -1);
      if (k >= 1 && k <= n)
        continue;
      luaL_error(L, "bad argument #1 to 'select' (case %I out of 1..%d, the "
                    "length of the case table: a hole in the list?)", k, n);
    }
    if (lua_type(L, -1) == LUA_TSTRING && strcmp(lua_tostring(L, -1), "default") == 0)
      continue;
    if (lua_type(L, -1) == LUA_TSTRING)
      luaL_error(L, "bad argument #1 to 'select' (unknown option '%s')",
                 lua_tostring(L, -1));
    luaL_error(L, "bad argument #1 to 'select' (unexpected %s key)",
               luaL_typename(L, -1));
  }
}

/* Raise for a case naming a finalised channel, the one error testchan
** cannot tell from a wrong type. */
static void checknotfinalised(lua_State *L, int idx, int mt, int i) {
  LChan *ch = testlchan(L, idx, mt);
  if (ch && ch->c == NULL)
    select_error(L, "case %d: %s", i, finalised);
}

/*
** go.select{ a, b, {c, v}, false, default = true } -> i, v, ok
** Checked fully before any value is stored, so that a bad case raises
** with nothing to release.  Each case's channel object stays on the stack
** until the select returns (see the top of the file).
*/
static int l_select(lua_State *L) {
  const int mt = lua_upvalueindex(2);
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_settop(L, 1);
  int n = ncases(L);
  bool block = blocks(L);
  checkkeys(L, n);
  for (int i = 1; i <= n; i++) {
    int t = lua_rawgeti(L, 1, i);
    if (t == LUA_TTABLE) {
      lua_rawgeti(L, -1, 1);
      checknotfinalised(L, -1, mt, i);
      if (testchan(L, -1, mt) == NULL)
        select_error(L, "case %d: send case {ch, value} without a %s", i, "channel");
      if (lua_rawgeti(L, -2, 2) == LUA_TNIL)
        select_error(L, "case %d: send of %s", i, "nil");
      lua_pop(L, 2);
    } else if (!(t == LUA_TBOOLEAN && !lua_toboolean(L, -1))) {
      checknotfinalised(L, -1, mt, i);
      if (testchan(L, -1, mt) == NULL)
        select_error(L, "case %d: channel, {channel, value} or false expected, "
                        "got %s", i, luaL_typename(L, -1));
    }
    lua_pop(L, 1);
  }
  luaL_checkstack(L, n + 4, "too many cases");
  LG *lg = lgoro_current(L);
  goro_select_case *cases;
  lvalue *vals;
  selbuf_get(L, lg, n, &cases, &vals);
  for (int i = 0; i < n; i++) {
    goro_select_case *cas = &cases[i];
    lvalue *v = &vals[i];
    memset(v, 0, sizeof *v);
    int t = lua_rawgeti(L, 1, i + 1);
    if (t == LUA_TTABLE) {
      lua_rawgeti(L, -1, 1);
      lua_rawgeti(L, -2, 2);
      *cas = (goro_select_case){ testchan(L, -2, mt), GORO_SELECT_SEND, v, false };
      lvalue_from(L, -1, v);
      lua_pop(L, 1);
      lua_remove(L, -2);   /* the channel stays */
    } else if (t == LUA_TBOOLEAN) {
      *cas = (goro_select_case){ NULL, GORO_SELECT_RECV, v, false };
      lua_pop(L, 1);
    } else {
      *cas = (goro_select_case){ testchan(L, -1, mt), GORO_SELECT_RECV, v, false };
    }
  }
  /* A select that will block anyway skips the non-blocking attempt (a
  ** round of locking every channel) when no case looks ready. */
  int rc = GORO_EAGAIN, chosen = -1;
  if (!block || goro_select_maybe_ready(cases, n))
    rc = goro_select(cases, n, false, &chosen);
  if (rc == GORO_ENOMEM || rc == GORO_EINVAL) {
    release_unsent(L, cases, vals, n, -1);
    selbuf_put(lg, cases);
    return luaL_error(L, "select: %s", goro_strerror(rc));
  }
  if (rc != GORO_EAGAIN || !block)
    return select_finish(L, lg, cases, vals, n, chosen, rc);
  for (int i = 0; i < n; i++) {
    if (cases[i].c) {
      lg->cases = cases;
      lg->vals = vals;
      lg->ncases = n;
      return lgoro_block(L, lg, OP_SELECT, select_results);
    }
  }
  /* No case at all: Go's select {} blocks for good.  So does a receive
  ** from a channel nobody else can reach, and the deadlock check still
  ** sees the main thread blocked. */
  selbuf_put(lg, cases);
  lg->c = lg->U->never;
  return lgoro_block(L, lg, OP_RECV, recv_results);
}

/* }====================================================== */


/* Every function of the channel object has upvalues U and the channel
** metatable (checklchan). */
void lgoro_open_chan(lua_State *L, Universe *U) {
  static const luaL_Reg methods[] = {
    {"send", chan_send},
    {"recv", chan_recv},
    {"close", chan_close},
    {"len", chan_len},
    {"cap", chan_cap},
    {NULL, NULL}
  };
  static const luaL_Reg metamethods[] = {
    {"__gc", chan_gc},
    {"__len", chan_len},
    {"__tostring", chan_tostring},
    {NULL, NULL}
  };
  luaL_newmetatable(L, LGORO_CHAN);
  int mt = lua_gettop(L);
  lua_pushlightuserdata(L, U);
  lua_pushvalue(L, mt);
  luaL_setfuncs(L, metamethods, 2);
  lua_createtable(L, 0, 6);
  lua_pushlightuserdata(L, U);
  lua_pushvalue(L, mt);
  luaL_setfuncs(L, methods, 2);
  lua_pushlightuserdata(L, U);
  lua_pushvalue(L, mt);
  lua_pushlightuserdata(L, U);
  lua_pushvalue(L, mt);
  lua_pushcclosure(L, chan_iter_next, 2);
  lua_pushcclosure(L, chan_iter, 3);
  lua_setfield(L, -2, "iter");
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);

  lua_pushlightuserdata(L, U);
  lua_pushcclosure(L, l_chan, 1);
  lua_setfield(L, -2, "chan");
  lua_pushlightuserdata(L, U);
  luaL_getmetatable(L, LGORO_CHAN);
  lua_pushcclosure(L, l_select, 2);
  lua_setfield(L, -2, "select");
}
