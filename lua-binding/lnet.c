/*
** lnet.c — go.net: TCP listeners and connections, UDP sockets and DNS,
** on non-blocking fds watched by the poller (netpoll/).
**
** Every operation tries its syscall first, on the goroutine's own thread
** and with the token held (no hop when data is there), and waits for the
** fd only on EAGAIN.  The wait takes the yield path when it can: then the
** continuation runs the same operation again, with its progress kept in
** the goroutine's state; elsewhere it blocks in place and loops.  Errors
** come back Lua-style, nil and a message: "timeout", "closed", or the
** system's words ("connection refused").
**
** Every method and metamethod of a socket class is a closure with three
** upvalues: the universe, its operation (NET_*, NET_NONE for the others)
** and its class (KIND_*).  It checks that `self` has that class's
** metatable before it touches the userdata, so that a method taken from
** one object and called on another (`l.close(io.stdout)`) raises instead
** of writing into foreign memory.
**
** A goroutine may park in the middle of a call: waiting for its fd, or
** for a name lookup.  Other goroutines run meanwhile and may close the
** socket, and the fd number may go to a new socket; so after every park
** the socket is checked again (s->f) before its fd is used.
*/
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include "lgoro.h"

#define LGORO_CONN "goro.conn"
#define LGORO_LISTENER "goro.listener"
#define LGORO_UDP "goro.udp"

enum { KIND_CONN, KIND_LISTENER, KIND_UDP };
static const char *const kindnames[] = { LGORO_CONN, LGORO_LISTENER, LGORO_UDP };
enum { READ_DEFAULT = 64 * 1024, BUF_MIN = 4096, BUF_KEEP = 16 * READ_DEFAULT };

/* A socket of any kind, with a read buffer (conn:readline, readn). */
typedef struct Sock {
  goro_fd *f;                /* NULL once closed */
  int fd;
  int kind;
  double timeout;            /* seconds per call; < 0: none */
  char *buf;                 /* buffered input: buf[bufstart..bufend) */
  size_t bufstart, bufend, bufcap;
  size_t nolf;               /* the first nolf buffered bytes hold no \n */
} Sock;

/* The operation a goroutine is doing on a socket, kept across a wait. */
enum { NET_NONE, NET_READ, NET_READLINE, NET_READN, NET_WRITE, NET_ACCEPT,
       NET_CONNECT, NET_RECVFROM };

/* Durations beyond this many seconds (~285 years) are as good as forever,
** and far from overflowing int64_t nanoseconds (as in ltime.c). */
#define MAX_SECONDS 9e9

static const char *errmsg(int e) {
  static __thread char lower[128];
  switch (e) {
    case ETIMEDOUT: return "timeout";
    case EPIPE: return "closed";
    default: break;
  }
  const char *s = strerror(e);
  size_t n = strlen(s);
  if (n >= sizeof lower) n = sizeof lower - 1;
  memcpy(lower, s, n);
  lower[n] = '\0';
  if (lower[0] >= 'A' && lower[0] <= 'Z' && !(lower[1] >= 'A' && lower[1] <= 'Z'))
    lower[0] = (char)(lower[0] - 'A' + 'a');
  return lower;
}

static int fail(lua_State *L, const char *msg) {
  lua_pushnil(L);
  lua_pushstring(L, msg);
  return 2;
}

static Sock *checksock(lua_State *L, int kind) {
  return luaL_checkudata(L, 1, kindnames[kind]);
}

/* The `self` of a method or metamethod: a socket of the class in its
** upvalue 3, or an error ("goro.listener expected, got goro.chan"). */
static Sock *checkself(lua_State *L) {
  return checksock(L, (int)lua_tointeger(L, lua_upvalueindex(3)));
}

static Sock *newsock(lua_State *L, int fd, int kind) {
  /* Made during lua_close, its __gc would never run: fd and all leak. */
  if (lgoro_closing(L, lgoro_universe(L))) {
    close(fd);
    luaL_error(L, "goro: the Lua state is closing");
  }
  Sock *s = lua_newuserdatauv(L, sizeof *s, 0);
  memset(s, 0, sizeof *s);
  s->fd = -1;
  s->timeout = -1;
  luaL_setmetatable(L, kindnames[kind]);
  s->f = goro_fd_open(fd);
  if (s->f == NULL) {
    close(fd);
    luaL_error(L, "goro: out of memory");
  }
  s->fd = fd;
  s->kind = kind;
  return s;
}

static void sock_close(Sock *s) {
  if (s->f) {
    goro_fd_close(s->f);   /* wakes its waiters with "closed" */
    s->f = NULL;
  }
  free(s->buf);
  s->buf = NULL;
  s->bufstart = s->bufend = s->bufcap = 0;
  s->nolf = 0;
}

/* close, __close and __gc.  Lua calls __gc and __close with the object
** they belong to; called by hand with anything else, they raise. */
static int l_close(lua_State *L) {
  sock_close(checkself(L));
  return 0;
}

/* The deadline `seconds` (>= 0, at most MAX_SECONDS) from now. */
static int64_t deadline_after(double seconds) {
  return goro_now() + (int64_t)(seconds * 1e9) + 1;
}

static int64_t deadline_of(Sock *s) {
  return s->timeout < 0 ? 0 : deadline_after(s->timeout);
}


/*
** {======================================================
** Addresses
** =======================================================
*/

/* "host:port", "[v6]:port", ":port" -> host (may be ""), port.  The port
** is decimal digits only, 0 to 65535: no sign, no blank, no "0x". */
static int splitaddr(const char *a, char *host, size_t hsize,
                     char *port, size_t psize) {
  const char *colon = strrchr(a, ':');
  if (colon == NULL)
    return 0;
  const char *h = a, *he = colon;
  if (*h == '[') {
    h++;
    if (he == h || he[-1] != ']')
      return 0;
    he--;
  }
  size_t hl = (size_t)(he - h), pl = strlen(colon + 1);
  if (hl >= hsize || pl == 0 || pl >= psize)
    return 0;
  memcpy(host, h, hl);
  host[hl] = '\0';
  memcpy(port, colon + 1, pl + 1);
  long p = 0;
  for (const char *d = port; *d; d++) {
    if (*d < '0' || *d > '9')
      return 0;
    p = p * 10 + (*d - '0');
    if (p > 65535)
      return 0;
  }
  return 1;
}

static void pushaddr(lua_State *L, const struct sockaddr *sa) {
  char ip[INET6_ADDRSTRLEN];
  if (sa->sa_family == AF_INET6) {
    const struct sockaddr_in6 *s6 = (const void *)sa;
    inet_ntop(AF_INET6, &s6->sin6_addr, ip, sizeof ip);
    lua_pushfstring(L, "[%s]:%d", ip, (int)ntohs(s6->sin6_port));
  } else if (sa->sa_family == AF_INET) {
    const struct sockaddr_in *s4 = (const void *)sa;
    inet_ntop(AF_INET, &s4->sin_addr, ip, sizeof ip);
    lua_pushfstring(L, "%s:%d", ip, (int)ntohs(s4->sin_port));
  } else {
    lua_pushnil(L);
  }
}

typedef struct gai_call {
  const char *host, *port;
  struct addrinfo hints, *res;
  int rc;
} gai_call;

static void do_gai(void *arg) {
  gai_call *g = arg;
  g->rc = goro_getaddrinfo(g->host, g->port, &g->hints, &g->res);
}

/*
** Why a lookup failed.  Out of fds, glibc's getaddrinfo can open neither
** /etc/hosts nor a socket to a name server, and answers EAI_NONAME, "no
** such host", for a name that may well exist; and errno stays on the
** pool's thread.  So after a failure, see whether this process can open
** a socket at all, and if not, say why.  (`sys`: errno of an EAI_SYSTEM
** answered on this thread, else 0.)
*/
static const char *lookup_error(int rc, int sys) {
  if (rc == EAI_SYSTEM && sys != 0)
    return errmsg(sys);
  if (rc == EAI_MEMORY)
    return errmsg(ENOMEM);
  int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd >= 0)
    close(fd);
  else if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
    return errmsg(errno);
  return rc == EAI_NONAME ? "no such host" : gai_strerror(rc);
}

/* Resolve host and port: numeric addresses at once, names on the
** poller's thread pool (the caller parks, its thread runs others). */
static int resolve(lua_State *L, const char *host, const char *port, int socktype,
                   bool passive, struct addrinfo **res, const char **err) {
  gai_call g = { .host = host[0] ? host : NULL, .port = port };
  g.hints.ai_socktype = socktype;
  g.hints.ai_flags = (passive ? AI_PASSIVE : 0) | AI_NUMERICSERV;
  if (g.host == NULL && !passive)
    g.host = "127.0.0.1";
  g.hints.ai_flags |= AI_NUMERICHOST;
  g.rc = getaddrinfo(g.host, g.port, &g.hints, &g.res);
  int sys = g.rc == EAI_SYSTEM ? errno : 0;
  if (g.rc == EAI_NONAME) {   /* a name: ask the pool */
    g.hints.ai_flags &= ~AI_NUMERICHOST;
    lgoro_without_token(L, lgoro_current(L), do_gai, &g);
  }
  if (g.rc != 0) {
    *err = lookup_error(g.rc, sys);
    return -1;
  }
  *res = g.res;
  return 0;
}

/* go.net.resolve(host) -> { ip, ... } */
static int l_resolve(lua_State *L) {
  const char *host = luaL_checkstring(L, 1);
  struct addrinfo *res;
  const char *err;
  if (resolve(L, host, "0", SOCK_STREAM, false, &res, &err) != 0)
    return fail(L, err);
  lua_newtable(L);
  int n = 0;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    char ip[INET6_ADDRSTRLEN];
    const void *a = ai->ai_family == AF_INET6
        ? (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr
        : (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr;
    if (inet_ntop(ai->ai_family, a, ip, sizeof ip)) {
      lua_pushstring(L, ip);
      lua_rawseti(L, -2, ++n);
    }
  }
  freeaddrinfo(res);
  return 1;
}

/* }====================================================== */


/*
** {======================================================
** The retry loop: syscall, wait, syscall
** =======================================================
*/

static int netop(lua_State *L, LG *lg);

/*
** Did connect(2) join the socket to itself?  When nothing listens on a
** port of the ephemeral range, the kernel may pick that very port as the
** dialling socket's own, and TCP's simultaneous open then "connects" it
** to itself: a scan of the ephemeral range of 127.0.0.1 (28,232 ports)
** found one to three such ports a run.
** Go's dialer checks for this too (selfConnect in net/tcpsock_posix.go).
** The kernel never picks a port something is bound to, so a self
** connection means nobody was listening: the answer is "connection
** refused", which is what a second try would get.
*/
static bool self_connected(int fd) {
  struct sockaddr_storage here, there;
  socklen_t hl = sizeof here, tl = sizeof there;
  if (getsockname(fd, (struct sockaddr *)&here, &hl) != 0 ||
      getpeername(fd, (struct sockaddr *)&there, &tl) != 0)
    return false;
  if (here.ss_family != there.ss_family)
    return false;
  if (here.ss_family == AF_INET) {
    const struct sockaddr_in *a = (void *)&here, *b = (void *)&there;
    return a->sin_port == b->sin_port &&
           a->sin_addr.s_addr == b->sin_addr.s_addr;
  }
  if (here.ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (void *)&here, *b = (void *)&there;
    return a->sin6_port == b->sin6_port &&
           memcmp(&a->sin6_addr, &b->sin6_addr, sizeof a->sin6_addr) == 0;
  }
  return false;
}

static int netop_continue(lua_State *L, LG *lg, int rc) {
  if (rc == GORO_ETIMEDOUT)
    return fail(L, "timeout");
  if (rc == GORO_ECLOSED)
    return fail(L, "closed");
  if (rc != GORO_OK)
    return fail(L, goro_strerror(rc));
  return netop(L, lg);
}

/* Wait for the socket at index 1; returns the count of results when the
** operation is over (yield path, or an error), or -1 to try again. */
static int wait_for(lua_State *L, LG *lg, Sock *s, int events) {
  lg->fd = s->f;
  lg->events = events;
  if (lgoro_yieldable(L, lg))
    return lgoro_block(L, lg, OP_FDWAIT, netop_continue);
  int rc = lgoro_block_now(L, lg, OP_FDWAIT);
  if (rc != GORO_OK)
    return netop_continue(L, lg, rc);
  return -1;
}

/* Hand the first n buffered bytes to the caller. */
static void consume(Sock *s, size_t n) {
  s->bufstart += n;
  s->nolf = 0;
}

/* Fill the read buffer with what one read(2) gives: > 0 bytes, 0 at EOF,
** or -errno. */
static ssize_t fill(Sock *s, size_t want) {
  if (s->bufstart > 0 && s->bufstart == s->bufend)
    s->bufstart = s->bufend = 0;
  /* An empty buffer that one large readn grew is given back, so that a
  ** long-lived connection does not keep its largest read's size. */
  if (s->bufend == 0 && s->bufcap > BUF_KEEP && want <= BUF_KEEP) {
    free(s->buf);
    s->buf = NULL;
    s->bufcap = 0;
  }
  if (s->bufcap - s->bufend < want) {
    if (s->bufstart > 0) {
      memmove(s->buf, s->buf + s->bufstart, s->bufend - s->bufstart);
      s->bufend -= s->bufstart;
      s->bufstart = 0;
    }
    if (s->bufcap - s->bufend < want) {
      /* Room for what is wanted, but grown only as data comes: a readn
      ** of 2^53 bytes must not ask for them before the peer sends any.
      ** Doubling keeps a long readn's copies linear. */
      size_t cap = s->bufend + (want < BUF_KEEP ? want : BUF_KEEP);
      if (cap < 2 * s->bufcap)
        cap = 2 * s->bufcap < s->bufend + want ? 2 * s->bufcap : s->bufend + want;
      if (cap < BUF_MIN) cap = BUF_MIN;
      if (cap > s->bufcap) {
        char *b = realloc(s->buf, cap);
        if (b == NULL)
          return -ENOMEM;
        s->buf = b;
        s->bufcap = cap;
      }
    }
  }
  ssize_t n = read(s->fd, s->buf + s->bufend, s->bufcap - s->bufend);
  if (n < 0)
    return -errno;
  s->bufend += (size_t)n;
  return n;
}

/*
** The operation lg->netop (NET_*) on the socket at index 1, its arguments
** at 2 and up.  Runs again from the top after every wait; what it has done
** so far is in the socket's buffer (reads) or lg->netdone (writes).
*/
static int netop(lua_State *L, LG *lg) {
  Sock *s = lua_touserdata(L, 1);
  for (;;) {
    if (s->f == NULL)
      return fail(L, "closed");
    int r;
    switch ((int)lua_tointeger(L, lua_upvalueindex(2))) {
      case NET_READ: {
        size_t want = (size_t)luaL_optinteger(L, 2, READ_DEFAULT);
        if (want > BUF_KEEP)   /* "up to n": bound the buffer */
          want = BUF_KEEP;
        if (s->bufend > s->bufstart) {
          size_t n = s->bufend - s->bufstart;
          if (n > want) n = want;
          lua_pushlstring(L, s->buf + s->bufstart, n);
          consume(s, n);
          return 1;
        }
        ssize_t n = fill(s, want);
        if (n > 0) {   /* at most `want`; the rest stays buffered */
          size_t take = (size_t)n < want ? (size_t)n : want;
          lua_pushlstring(L, s->buf + s->bufstart, take);
          consume(s, take);
          return 1;
        }
        if (n == 0)
          return fail(L, "closed");
        if (n != -EAGAIN && n != -EWOULDBLOCK && n != -EINTR)
          return fail(L, errmsg((int)-n));
        if (n == -EINTR)
          continue;
        if ((r = wait_for(L, lg, s, GORO_READ)) >= 0)
          return r;
        continue;
      }
      case NET_READLINE:
      case NET_READN: {
        bool line = lua_tointeger(L, lua_upvalueindex(2)) == NET_READLINE;
        size_t need = line ? 0 : (size_t)luaL_checkinteger(L, 2);
        /* readline(max): a line longer than max bytes (its \r counted) is
        ** an error, left in the buffer, so that a peer cannot make the
        ** buffer grow without bound. */
        size_t max = line ? (size_t)luaL_optinteger(L, 2, 0) : 0;
        for (;;) {
          size_t have = s->bufend - s->bufstart;
          if (line) {
            /* Search only what arrived since the last look, so that a
            ** long line arriving in many pieces costs linear time. */
            char *nl = have > s->nolf
                ? memchr(s->buf + s->bufstart + s->nolf, '\n', have - s->nolf)
                : NULL;
            size_t len = nl ? (size_t)(nl - (s->buf + s->bufstart)) : have;
            s->nolf = len;
            if (max > 0 && len > max)
              return fail(L, "line too long");
            if (nl) {
              size_t keep = len;
              if (keep > 0 && s->buf[s->bufstart + keep - 1] == '\r')
                keep--;
              lua_pushlstring(L, s->buf + s->bufstart, keep);
              consume(s, len + 1);
              return 1;
            }
          } else if (have >= need) {
            lua_pushlstring(L, s->buf + s->bufstart, need);
            consume(s, need);
            return 1;
          }
          ssize_t n = fill(s, line ? BUF_MIN : need - have);
          if (n > 0)
            continue;
          if (n == 0)
            return fail(L, "closed");
          if (n == -EINTR)
            continue;
          if (n != -EAGAIN && n != -EWOULDBLOCK)
            return fail(L, errmsg((int)-n));
          break;
        }
        if ((r = wait_for(L, lg, s, GORO_READ)) >= 0)
          return r;
        continue;
      }
      case NET_WRITE: {
        size_t len;
        const char *data = lua_tolstring(L, 2, &len);
        while (lg->netdone < len) {
          ssize_t n = send(s->fd, data + lg->netdone, len - lg->netdone, MSG_NOSIGNAL);
          if (n > 0) {
            lg->netdone += (size_t)n;
            continue;
          }
          if (n < 0 && errno == EINTR)
            continue;
          if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
          return fail(L, errmsg(errno));
        }
        if (lg->netdone == len) {
          lua_pushinteger(L, (lua_Integer)len);
          return 1;
        }
        if ((r = wait_for(L, lg, s, GORO_WRITE)) >= 0)
          return r;
        continue;
      }
      case NET_ACCEPT: {
        int fd = accept4(s->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
          int one = 1;
          setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          newsock(L, fd, KIND_CONN);
          return 1;
        }
        if (errno == EINTR || errno == ECONNABORTED)
          continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK)
          return fail(L, errmsg(errno));   /* EMFILE: the caller decides */
        if ((r = wait_for(L, lg, s, GORO_READ)) >= 0)
          return r;
        continue;
      }
      case NET_CONNECT: {
        /* The connect(2) was started by dial; here, wait for its end. */
        if (lg->netdone == 0) {
          lg->netdone = 1;
          if ((r = wait_for(L, lg, s, GORO_WRITE)) >= 0)
            return r;
          continue;   /* from the top: closed meanwhile? */
        }
        int err = 0;
        socklen_t el = sizeof err;
        getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &err, &el);
        if (err == 0 && self_connected(s->fd))
          err = ECONNREFUSED;
        if (err != 0) {
          sock_close(s);
          return fail(L, errmsg(err));
        }
        lua_settop(L, 1);
        return 1;
      }
      case NET_RECVFROM: {
        /* Into the socket's own buffer: a luaL_Buffer's box is a
        ** to-be-closed slot, which must not be dropped around a wait. */
        size_t want = (size_t)luaL_optinteger(L, 2, READ_DEFAULT);
        if (want > BUF_KEEP)
          want = BUF_KEEP;
        if (s->bufcap < want) {
          char *nb = realloc(s->buf, want);
          if (nb == NULL)
            return fail(L, errmsg(ENOMEM));
          s->buf = nb;
          s->bufcap = want;
        }
        struct sockaddr_storage from;
        socklen_t fl = sizeof from;
        ssize_t n = recvfrom(s->fd, s->buf, want, 0, (struct sockaddr *)&from, &fl);
        if (n >= 0) {
          lua_pushlstring(L, s->buf, (size_t)n);
          pushaddr(L, (struct sockaddr *)&from);
          return 2;
        }
        int e = errno;
        if (e == EINTR)
          continue;
        if (e != EAGAIN && e != EWOULDBLOCK)
          return fail(L, errmsg(e));
        if ((r = wait_for(L, lg, s, GORO_READ)) >= 0)
          return r;
        continue;
      }
      default:
        return luaL_error(L, "goro: bad socket operation");
    }
  }
}

/* Start operation `op` (upvalue 2) on the socket s at index 1. */
static int start(lua_State *L, Sock *s) {
  LG *lg = lgoro_current(L);
  lg->netdone = 0;
  lg->deadline = deadline_of(s);
  if (s->f == NULL)
    return fail(L, "closed");
  return netop(L, lg);
}

static int conn_op(lua_State *L) {
  Sock *s = checkself(L);
  int op = (int)lua_tointeger(L, lua_upvalueindex(2));
  if ((op == NET_READ || op == NET_READLINE) && !lua_isnoneornil(L, 2))
    luaL_argcheck(L, luaL_checkinteger(L, 2) > 0, 2, "must be positive");
  if (op == NET_READN)
    luaL_argcheck(L, luaL_checkinteger(L, 2) >= 0, 2, "must not be negative");
  if (op == NET_WRITE)
    luaL_checkstring(L, 2);
  return start(L, s);
}

static int listener_accept(lua_State *L) {
  return start(L, checkself(L));
}

static int udp_recvfrom(lua_State *L) {
  Sock *s = checkself(L);
  if (!lua_isnoneornil(L, 2))
    luaL_argcheck(L, luaL_checkinteger(L, 2) > 0, 2, "must be positive");
  return start(L, s);
}

/* }====================================================== */


/*
** {======================================================
** Making sockets
** =======================================================
*/

/*
** Options tables (listen's and dial's).  Misuse raises an error that
** names the function and the option, as an argument error names the
** argument: "bad option 'timeout' to 'dial' (number expected, got
** table)".  A key the function does not know is an error too, so that a
** misspelt option is not silently ignored.
*/
static int opt_error(lua_State *L, const char *fname, const char *k,
                     const char *msg) {
  return luaL_error(L, "bad option '%s' to '%s' (%s)", k, fname, msg);
}

/* The type of the value at idx as luaL_typeerror names it. */
static const char *type_name(lua_State *L, int idx) {
  if (luaL_getmetafield(L, idx, "__name") == LUA_TSTRING)
    return lua_tostring(L, -1);   /* left on the stack: an error follows */
  if (lua_type(L, idx) == LUA_TLIGHTUSERDATA)
    return "light userdata";
  return luaL_typename(L, idx);
}

static int opt_typeerror(lua_State *L, const char *fname, const char *k,
                         const char *expected) {
  int v = lua_gettop(L);
  return opt_error(L, fname, k, lua_pushfstring(L, "%s expected, got %s",
                                                expected, type_name(L, v)));
}

/* Check the options table at t (absent or nil: no options): a table whose
** keys are all in `known`. */
static void check_options(lua_State *L, int t, const char *fname,
                          const char *const known[]) {
  if (lua_isnoneornil(L, t))
    return;
  luaL_checktype(L, t, LUA_TTABLE);
  lua_pushnil(L);
  while (lua_next(L, t)) {
    bool ok = false;
    if (lua_type(L, -2) == LUA_TSTRING) {
      const char *k = lua_tostring(L, -2);
      for (int i = 0; known[i] != NULL && !ok; i++)
        ok = strcmp(k, known[i]) == 0;
    }
    if (!ok)
      opt_error(L, fname, luaL_tolstring(L, -2, NULL), "unknown option");
    lua_pop(L, 1);
  }
}

/* Option k of the table at t, pushed; nil if there is no table. */
static int get_option(lua_State *L, int t, const char *k) {
  if (lua_isnoneornil(L, t)) {
    lua_pushnil(L);
    return LUA_TNIL;
  }
  return lua_getfield(L, t, k);
}

/* A number of seconds (a timeout): not NaN, not negative, and clamped to
** MAX_SECONDS, so that its nanoseconds fit an int64_t.  -1 if absent. */
static double opt_seconds(lua_State *L, int t, const char *fname, const char *k) {
  double v = -1;
  if (get_option(L, t, k) != LUA_TNIL) {
    int isnum;
    v = lua_tonumberx(L, -1, &isnum);
    if (!isnum)
      opt_typeerror(L, fname, k, "number");
    if (isnan(v))
      opt_error(L, fname, k, "not a number");
    if (v < 0)
      opt_error(L, fname, k, "must not be negative");
    if (v > MAX_SECONDS)
      v = MAX_SECONDS;
  }
  lua_pop(L, 1);
  return v;
}

/* A count (a backlog): not NaN, not negative, clamped to INT_MAX (the
** kernel caps a backlog at its own maximum anyway). */
static int opt_count(lua_State *L, int t, const char *fname, const char *k,
                     int dflt) {
  int n = dflt;
  if (get_option(L, t, k) != LUA_TNIL) {
    int isnum;
    double v = lua_tonumberx(L, -1, &isnum);
    if (!isnum)
      opt_typeerror(L, fname, k, "number");
    if (isnan(v))
      opt_error(L, fname, k, "not a number");
    if (v < 0)
      opt_error(L, fname, k, "must not be negative");
    n = v >= (double)INT_MAX ? INT_MAX : (int)v;
  }
  lua_pop(L, 1);
  return n;
}

static bool opt_bool(lua_State *L, int t, const char *fname, const char *k) {
  int type = get_option(L, t, k);
  if (type != LUA_TNIL && type != LUA_TBOOLEAN)
    opt_typeerror(L, fname, k, "boolean");
  bool v = lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

static int bind_socket(lua_State *L, const char *addr, int socktype, int kind,
                       int backlog, bool reuseport) {
  char host[256], port[32];
  if (!splitaddr(addr, host, sizeof host, port, sizeof port))
    return fail(L, "invalid address (want \"host:port\")");
  if (strcmp(host, "*") == 0)
    host[0] = '\0';
  struct addrinfo *res;
  const char *err;
  if (resolve(L, host, port, socktype, true, &res, &err) != 0)
    return fail(L, err);
  int e = 0;
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
    if (fd < 0) { e = errno; continue; }
    int one = 1;
    if (socktype == SOCK_STREAM)   /* for UDP it would allow two binds */
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuseport)
      setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
        (socktype != SOCK_STREAM || listen(fd, backlog) == 0)) {
      freeaddrinfo(res);
      newsock(L, fd, kind);
      return 1;
    }
    e = errno;
    close(fd);
  }
  freeaddrinfo(res);
  return fail(L, errmsg(e ? e : EADDRNOTAVAIL));
}

/* go.net.listen(address [, opts]) -> listener */
static int l_listen(lua_State *L) {
  static const char *const known[] = { "backlog", "reuseport", NULL };
  const char *addr = luaL_checkstring(L, 1);
  check_options(L, 2, "listen", known);
  int backlog = opt_count(L, 2, "listen", "backlog", 511);
  bool reuseport = opt_bool(L, 2, "listen", "reuseport");
  return bind_socket(L, addr, SOCK_STREAM, KIND_LISTENER, backlog, reuseport);
}

/* go.net.udp(address) -> u */
static int l_udp(lua_State *L) {
  return bind_socket(L, luaL_checkstring(L, 1), SOCK_DGRAM, KIND_UDP, 0, false);
}

static int dial_k(lua_State *L, int status, lua_KContext ctx) {
  (void)status; (void)ctx;
  return lua_gettop(L);
}

/* go.net.dial(address [, opts]) -> conn */
static int l_dial(lua_State *L) {
  static const char *const known[] = { "timeout", NULL };
  const char *addr = luaL_checkstring(L, 1);
  check_options(L, 2, "dial", known);
  double timeout = opt_seconds(L, 2, "dial", "timeout");
  char host[256], port[32];
  if (!splitaddr(addr, host, sizeof host, port, sizeof port))
    return fail(L, "invalid address (want \"host:port\")");
  struct addrinfo *res;
  const char *err;
  if (resolve(L, host, port, SOCK_STREAM, false, &res, &err) != 0)
    return fail(L, err);
  /* The first address only: enough for loopback and most hosts, and it
  ** keeps one operation per goroutine. */
  int fd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    freeaddrinfo(res);
    return fail(L, errmsg(errno));
  }
  int rc = connect(fd, res->ai_addr, res->ai_addrlen);
  int e = errno;
  freeaddrinfo(res);
  if (rc != 0 && e != EINPROGRESS) {
    close(fd);
    return fail(L, errmsg(e));
  }
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  LG *lg = lgoro_current(L);
  lua_settop(L, 0);
  lua_pushvalue(L, lua_upvalueindex(2));   /* dial_wait */
  newsock(L, fd, KIND_CONN);
  lg->deadline = timeout >= 0 ? deadline_after(timeout) : 0;
  lg->netdone = rc == 0;   /* connected at once: nothing to wait for */
  lua_callk(L, 1, LUA_MULTRET, 0, dial_k);
  return lua_gettop(L);
}

/* The second stage of dial, a closure with NET_CONNECT as upvalue 2:
** wait for the connect(2) that l_dial started, yielding if it can. */
static int dial_wait(lua_State *L) {
  Sock *s = checkself(L);
  LG *lg = lgoro_current(L);
  if (s->f == NULL)
    return fail(L, "closed");
  return netop(L, lg);
}

/* }====================================================== */


/*
** {======================================================
** Methods
** =======================================================
*/

/* conn:settimeout(s), l:settimeout(s), u:settimeout(s): seconds per call,
** nil for none.  Beyond MAX_SECONDS is forever, and stored as that. */
static int conn_settimeout(lua_State *L) {
  Sock *s = checkself(L);
  if (lua_isnoneornil(L, 2)) {
    s->timeout = -1;
  } else {
    lua_Number t = luaL_checknumber(L, 2);
    luaL_argcheck(L, !isnan(t), 2, "not a number");
    luaL_argcheck(L, t >= 0, 2, "must not be negative");
    s->timeout = t > MAX_SECONDS ? MAX_SECONDS : t;
  }
  return 0;
}

static int sock_name(lua_State *L, bool peer) {
  Sock *s = checkself(L);
  if (s->f == NULL)
    return fail(L, "closed");
  struct sockaddr_storage sa;
  socklen_t len = sizeof sa;
  int rc = peer ? getpeername(s->fd, (struct sockaddr *)&sa, &len)
                : getsockname(s->fd, (struct sockaddr *)&sa, &len);
  if (rc != 0)
    return fail(L, errmsg(errno));
  pushaddr(L, (struct sockaddr *)&sa);
  return 1;
}

/* conn:closewrite() -> true: shut the writing half down, as Go's
** TCPConn.CloseWrite does; the peer reads the end of the stream, and
** this end can still read what the peer sends. */
static int conn_closewrite(lua_State *L) {
  Sock *s = checkself(L);
  if (s->f == NULL)
    return fail(L, "closed");
  if (shutdown(s->fd, SHUT_WR) != 0)
    return fail(L, errmsg(errno));
  lua_pushboolean(L, 1);
  return 1;
}

static int l_localaddr(lua_State *L) { return sock_name(L, false); }
static int l_remoteaddr(lua_State *L) { return sock_name(L, true); }

/* u:sendto(s, address) -> bytes.  A name lookup parks the goroutine: the
** socket may be closed meanwhile, and its fd number given to another. */
static int udp_sendto(lua_State *L) {
  Sock *s = checkself(L);
  size_t len;
  const char *data = luaL_checklstring(L, 2, &len);
  const char *addr = luaL_checkstring(L, 3);
  if (s->f == NULL)
    return fail(L, "closed");
  char host[256], port[32];
  if (!splitaddr(addr, host, sizeof host, port, sizeof port))
    return fail(L, "invalid address (want \"host:port\")");
  struct addrinfo *res;
  const char *err;
  if (resolve(L, host, port, SOCK_DGRAM, false, &res, &err) != 0)
    return fail(L, err);
  if (s->f == NULL) {   /* closed during the lookup */
    freeaddrinfo(res);
    return fail(L, "closed");
  }
  ssize_t n = sendto(s->fd, data, len, MSG_NOSIGNAL, res->ai_addr, res->ai_addrlen);
  int e = errno;
  freeaddrinfo(res);
  if (n < 0)   /* a full send buffer drops the datagram, as UDP may */
    return fail(L, errmsg(e));
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

static int sock_tostring(lua_State *L) {
  Sock *s = checkself(L);
  if (s->f == NULL)
    lua_pushfstring(L, "%s (closed)", kindnames[s->kind]);
  else
    lua_pushfstring(L, "%s (fd %d)", kindnames[s->kind], s->fd);
  return 1;
}

/* Push f as a method of class `kind` doing operation `op`: a closure with
** the three upvalues of every socket method. */
static void pushmethod(lua_State *L, Universe *U, lua_CFunction f, int op, int kind) {
  lua_pushlightuserdata(L, U);
  lua_pushinteger(L, op);
  lua_pushinteger(L, kind);
  lua_pushcclosure(L, f, 3);
}

static void newclass(lua_State *L, Universe *U, int kind, const luaL_Reg *methods) {
  luaL_newmetatable(L, kindnames[kind]);
  pushmethod(L, U, l_close, NET_NONE, kind);
  lua_setfield(L, -2, "__gc");
  pushmethod(L, U, l_close, NET_NONE, kind);
  lua_setfield(L, -2, "__close");
  pushmethod(L, U, sock_tostring, NET_NONE, kind);
  lua_setfield(L, -2, "__tostring");
  lua_createtable(L, 0, 8);
  for (; methods->name != NULL; methods++) {
    pushmethod(L, U, methods->func, NET_NONE, kind);
    lua_setfield(L, -2, methods->name);
  }
  lua_setfield(L, -2, "__index");
  lua_pop(L, 1);
}

/* A method that runs netop for operation `op`. */
static void setop(lua_State *L, Universe *U, int kind, const char *name,
                  lua_CFunction f, int op) {
  luaL_getmetatable(L, kindnames[kind]);
  lua_getfield(L, -1, "__index");
  pushmethod(L, U, f, op, kind);
  lua_setfield(L, -2, name);
  lua_pop(L, 2);
}

void lgoro_open_net(lua_State *L, Universe *U) {
  static const luaL_Reg conn[] = {
    {"close", l_close}, {"closewrite", conn_closewrite},
    {"settimeout", conn_settimeout},
    {"localaddr", l_localaddr}, {"remoteaddr", l_remoteaddr}, {NULL, NULL}
  };
  static const luaL_Reg listener[] = {
    {"close", l_close}, {"addr", l_localaddr}, {"settimeout", conn_settimeout},
    {NULL, NULL}
  };
  static const luaL_Reg udp[] = {
    {"close", l_close}, {"addr", l_localaddr}, {"sendto", udp_sendto},
    {"settimeout", conn_settimeout}, {NULL, NULL}
  };
  newclass(L, U, KIND_CONN, conn);
  newclass(L, U, KIND_LISTENER, listener);
  newclass(L, U, KIND_UDP, udp);
  setop(L, U, KIND_CONN, "read", conn_op, NET_READ);
  setop(L, U, KIND_CONN, "readline", conn_op, NET_READLINE);
  setop(L, U, KIND_CONN, "readn", conn_op, NET_READN);
  setop(L, U, KIND_CONN, "write", conn_op, NET_WRITE);
  setop(L, U, KIND_LISTENER, "accept", listener_accept, NET_ACCEPT);
  setop(L, U, KIND_UDP, "recvfrom", udp_recvfrom, NET_RECVFROM);

  lua_createtable(L, 0, 5);
  static const luaL_Reg funcs[] = {
    {"listen", l_listen}, {"udp", l_udp}, {"resolve", l_resolve}, {NULL, NULL}
  };
  lua_pushlightuserdata(L, U);
  luaL_setfuncs(L, funcs, 1);
  /* dial: upvalue 2 is the connect-wait closure (NET_CONNECT). */
  lua_pushlightuserdata(L, U);
  pushmethod(L, U, dial_wait, NET_CONNECT, KIND_CONN);
  lua_pushcclosure(L, l_dial, 2);
  lua_setfield(L, -2, "dial");
  lua_setfield(L, -2, "net");
}
