#!/usr/bin/env bash
# bench/net.sh — goro's timer and network benchmarks, side by side with Go
# and two event loops for Lua; prints one table.
#
#   bench/net.sh [ROW...]        e.g.  bench/net.sh W8 W9   (default: W6 W8 W9)
#
# Rows (bench/README.md):
#   W6  100,000 goroutines sleeping d_i spread over 0-1 s: wall time, and the
#       worst lateness (row W6/late) — lower is better
#   W8  TCP echo: one load client (bench_go -load echo), 100 connections,
#       64-byte round trips for 5 s — round trips/s, higher is better
#   W9  HTTP/1.1 keep-alive "hello" under `wrk -t2 -c100 -d5s` — requests/s
# Columns: goro-lua (bench/lua/net_goro.lua on goro.so), Go (build/bench_go),
# luv (bench/lua/net_luv.lua, Debian lua-luv), cqueues
# (bench/lua/net_cqueues.lua, Debian lua-cqueues).  Ratios are against Go;
# W9 also shows goro against the best of luv and cqueues.
#
# Servers listen on 127.0.0.1, on a port the kernel picks (they print
# "LISTEN 127.0.0.1:<port>"); the runner waits until the port accepts, runs
# the load, then stops the server.  Servers and load share the machine's
# CPUs.  Every server and client runs under `timeout` in a process group of
# its own, and every one still running is killed on exit, whatever the
# reason (trap).  Builds nothing: `make bench` builds first.
#
# Environment:
#   BENCH_RUNS      runs per implementation and row (default 5); the median is shown
#   BENCH_TIMEOUT   seconds before one W6 run counts as failed (default 120)
#   BENCH_SCALE     multiplies W6's N (default 1)
#   BENCH_NET_SECS  seconds of load per W8/W9 run (default 5)
#   BENCH_NET_CONNS connections of the W8/W9 load (default 100)
#   BENCH_GO        Go's binary (default build/bench_go): W6, the Go servers, W8's client
#   BENCH_LUA       the Lua interpreter (default lua5.4)
#   BENCH_LUA_MOD   goro's Lua module (default build/release/goro.so)
#   BENCH_WRK       wrk (default wrk)

set -u
cd "$(dirname "$0")/.." || exit 1
. bench/table.sh

RUNS=${BENCH_RUNS:-5}
TIMEOUT=${BENCH_TIMEOUT:-120}
SCALE=${BENCH_SCALE:-1}
SECS=${BENCH_NET_SECS:-5}
CONNS=${BENCH_NET_CONNS:-100}
GO_BIN=${BENCH_GO:-build/bench_go}
LUA=${BENCH_LUA:-lua5.4}
LUA_MOD=${BENCH_LUA_MOD:-build/release/goro.so}
WRK=${BENCH_WRK:-wrk}
export LUA_CPATH="$(dirname "$LUA_MOD")/?.so;;"
# A server exits by itself after this long (it is killed well before).
SERVER_LIMIT=$((SECS + 60))

# --- implementations: name | command prefix (w6, serve echo|http follow) ---
IMPLS=(
  "goro-lua|$LUA bench/lua/net_goro.lua"
  "Go|$GO_BIN"
  "luv|$LUA bench/lua/net_luv.lua"
  "cqueues|$LUA bench/lua/net_cqueues.lua"
)
BASE=1        # Go: the reference of every ratio
GORO=0        # the implementation the targets apply to
PEERS="2 3"   # the Lua peers of W9's second target

# --- rows: id | what the programs run | label | unit sense | target --------
# sense: low (lower is better) or high.  target: the ratio goro/Go must be
# <= (low) or >= (high); W9 adds ">= 1.2 x the best Lua peer".
ROWS=(
  "W6|W6|100k sleepers over 0-1 s: wall|low|1.05"
  "W6/late|W6|100k sleepers: worst lateness|low|1.0"
  "W8|W8|TCP echo, ${CONNS} conns, 64 B, ${SECS} s|high|1.0"
  "W9|W9|HTTP hello, wrk -t2 -c${CONNS} -d${SECS}s|high|1.5"
)
W9_PEER_TARGET=1.2

field() { local IFS='|'; local a; read -r -a a <<<"$1"; printf '%s' "${a[$2]:-}"; }
NIMPL=${#IMPLS[@]}

# --- cleanup: every process group this script started ----------------------
OUT=$(mktemp -d "${TMPDIR:-/tmp}/goro-net.XXXXXX") || exit 1
declare -a PGIDS=()
cleanup() {
  local p
  for p in "${PGIDS[@]}"; do kill -TERM -- "-$p" 2>/dev/null; done
  for p in "${PGIDS[@]}"; do
    for _ in 1 2 3 4 5 6 7 8 9 10; do kill -0 -- "-$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$p" 2>/dev/null
  done
  rm -rf "$OUT"
}
trap cleanup EXIT
trap 'echo "bench/net.sh: interrupted" >&2; exit 130' INT TERM HUP

# Start "$@" in the background under timeout (GNU timeout puts itself and the
# command in a process group of their own).  Sets BGPID: timeout's pid, the
# group's id; BGSH: the subshell around it, which stores timeout's status in
# <out>.rc.  The subshell's stderr is dropped: bash's "Segmentation fault"
# line for a crashed server goes there, not over the progress line.
start_bg() {   # limit out err cmd...
  local limit=$1 out=$2 err=$3; shift 3
  rm -f "$out.pid" "$out.rc"
  ( timeout -k 2 "$limit" "$@" >"$out" 2>"$err" &
    echo $! >"$out.pid"
    wait $!
    echo $? >"$out.rc" ) 2>/dev/null &
  BGSH=$!
  BGPID=""
  local t
  for ((t = 0; t < 500; t++)); do
    BGPID=$(cat "$out.pid" 2>/dev/null)
    [[ $BGPID =~ ^[0-9]+$ ]] && break
    sleep 0.01
  done
  [[ $BGPID =~ ^[0-9]+$ ]] || { echo "bench/net.sh: could not start $*" >&2; exit 1; }
  PGIDS+=("$BGPID")
}
forget() {     # pid: no longer to clean up
  local keep=() p
  for p in "${PGIDS[@]}"; do [[ $p == "$1" ]] || keep+=("$p"); done
  PGIDS=("${keep[@]}")
}
alive() { kill -0 "$1" 2>/dev/null; }
stop_bg() {    # pid subshell: stop the group, reap it
  kill -TERM -- "-$1" 2>/dev/null
  for _ in $(seq 30); do alive "$1" || break; sleep 0.1; done
  kill -KILL -- "-$1" 2>/dev/null
  wait "$2" 2>/dev/null
  forget "$1"
}
# Run a command in the foreground, bounded, killable by the trap; sets RC.
run_fg() {     # limit out err cmd...
  start_bg "$@"
  wait "$BGSH"
  RC=$(cat "$2.rc" 2>/dev/null || echo 1)
  forget "$BGPID"
}

# --- what can run ---------------------------------------------------------
declare -a IMPL_NAME IMPL_CMD IMPL_OK
for ((i = 0; i < NIMPL; i++)); do
  IMPL_NAME[i]=$(field "${IMPLS[i]}" 0)
  IMPL_CMD[i]=$(field "${IMPLS[i]}" 1)
  IMPL_OK[i]=1
done
lua_has() {    # lua-code: is it true in $LUA?
  command -v "$LUA" >/dev/null 2>&1 && "$LUA" -e "$1" >/dev/null 2>&1
}
skip() { IMPL_OK[$1]=0; echo "note: ${IMPL_NAME[$1]}: $2; its column is skipped"; }
if [[ ! -r $LUA_MOD ]]; then
  skip 0 "$LUA_MOD not built"
elif ! lua_has 'local go = require "goro"; assert(go.sleep and go.now and go.net and go.net.listen)'; then
  skip 0 "the goro module has no go.sleep/go.net"
fi
[[ -x $GO_BIN ]] || skip 1 "$GO_BIN not built"
lua_has 'require "luv"' || skip 2 "no luv for $LUA (Debian: lua-luv)"
lua_has 'require "cqueues"; require "cqueues.socket"' || skip 3 "no cqueues for $LUA (Debian: lua-cqueues)"
HAVE_WRK=1
command -v "$WRK" >/dev/null 2>&1 || { HAVE_WRK=0; echo "note: no $WRK on PATH (Debian: wrk); W9 is skipped"; }

declare -a SEL=()
if (($# > 0)); then
  for arg in "$@"; do
    found=0
    for row in "${ROWS[@]}"; do
      id=$(field "$row" 0); w=$(field "$row" 1)
      if [[ $arg == "$id" || $arg == "$w" ]]; then
        [[ " ${SEL[*]:-} " == *" $w "* ]] || SEL+=("$w")
        found=1
      fi
    done
    ((found)) || echo "note: unknown workload $arg, ignored"
  done
else
  SEL=(W6 W8 W9)
fi
if [[ " ${SEL[*]:-} " == *" W8 "* && ${IMPL_OK[BASE]} != 1 ]]; then
  echo "note: W8's load client is $GO_BIN, not built: W8 is skipped"
  SEL=("${SEL[@]/W8/}")
fi
if [[ " ${SEL[*]:-} " == *" W9 "* && $HAVE_WRK != 1 ]]; then SEL=("${SEL[@]/W9/}"); fi
SEL=($(printf '%s\n' "${SEL[@]}" | grep .))
if ((${#SEL[@]} == 0)); then
  echo "bench/net.sh: no workload to run" >&2
  exit 1
fi

W6_N=$(awk -v s="$SCALE" 'BEGIN { v = int(100000 * s); if (v < 1) v = 1; print v }')

declare -a NOTES=()
note_fail() {  # row-ids impl run why errfile
  local last=""
  [[ -s $5 ]] && last=$(grep -v '^$' "$5" | tail -n 1)
  for rid in $1; do
    NOTES+=("$rid ${IMPL_NAME[$2]}: run $(($3 + 1)) failed ($4)${last:+: $last}")
    touch "$OUT/${rid//\//_}.$2.failed"
  done
}
record() {     # row-id impl value unit
  echo "$3" >>"$OUT/${1//\//_}.$2.values"
  echo "$4" >"$OUT/${1//\//_}.$2.unit"
}
why_rc() {
  local rc=$1
  if ((rc == 124 || rc == 137)); then echo "timed out"
  elif ((rc > 128)); then echo "killed by signal $((rc - 128))"
  else echo "exit $rc"; fi
}

# W6: one run of one implementation.
run_w6() {     # impl run
  local i=$1 r=$2 f="$OUT/w6.$1.$2"
  run_fg "$TIMEOUT" "$f.out" "$f.err" ${IMPL_CMD[i]} $([[ $i == "$BASE" ]] && echo "-w W6 -n" || echo "w6 -n") "$W6_N"
  local wall late
  wall=$(awk '$1 == "RESULT" && $2 == "W6" { print $3; exit }' "$f.out")
  late=$(awk '$1 == "RESULT" && $2 == "W6late" { print $3; exit }' "$f.out")
  if ((RC == 0)) && [[ -n $wall && -n $late ]]; then
    record W6 "$i" "$wall" ms
    record W6/late "$i" "$late" ms
    return 0
  fi
  local why; why=$(why_rc "$RC"); ((RC == 0)) && why="no RESULT lines"
  note_fail "W6 W6/late" "$i" "$r" "$why" "$f.err"
  return 1
}

# Start a server (echo or http) and wait until it accepts; sets SRV_PID and
# SRV_ADDR, or returns 1 with SRV_WHY.
start_server() {   # impl kind file-prefix
  local i=$1 kind=$2 f=$3 cmd
  if [[ $i == "$BASE" ]]; then cmd="${IMPL_CMD[i]} -serve $kind -limit $SERVER_LIMIT"
  else cmd="${IMPL_CMD[i]} serve $kind -limit $SERVER_LIMIT"; fi
  start_bg "$SERVER_LIMIT" "$f.srv.out" "$f.srv.err" $cmd
  SRV_PID=$BGPID SRV_SH=$BGSH
  SRV_ADDR=""
  local t
  for ((t = 0; t < 100; t++)); do          # 10 s for the LISTEN line
    SRV_ADDR=$(awk '$1 == "LISTEN" { print $2; exit }' "$f.srv.out" 2>/dev/null)
    [[ -n $SRV_ADDR ]] && break
    alive "$SRV_PID" || break
    sleep 0.1
  done
  if [[ ! $SRV_ADDR =~ ^127\.0\.0\.1:[0-9]+$ ]]; then
    SRV_WHY="server printed no LISTEN 127.0.0.1:<port> line"
    alive "$SRV_PID" || SRV_WHY="server exited before listening"
    return 1
  fi
  local port=${SRV_ADDR#*:}
  for ((t = 0; t < 100; t++)); do          # 10 s until it accepts
    if timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null; then return 0; fi
    alive "$SRV_PID" || break
    sleep 0.1
  done
  SRV_WHY="server at $SRV_ADDR does not accept"
  return 1
}

# After the load, one more exchange must work within 5 s: an echo of one
# line (W8), a "hello" (W9).
probe() {      # workload port
  timeout 6 bash -c '
    exec 3<>/dev/tcp/127.0.0.1/$1 || exit 1
    if [[ $0 == W8 ]]; then
      printf "probe\n" >&3; read -r -t 5 line <&3 && [[ $line == probe ]]
    else
      printf "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n" >&3
      timeout 5 cat <&3 | grep -q hello
    fi' "$1" "$2" 2>/dev/null
}

# W8 or W9: one run of one implementation's server under the load.
run_net() {    # workload impl run
  local w=$1 i=$2 r=$3 f="$OUT/$1.$2.$3" value="" why=""
  if ! start_server "$i" "$([[ $w == W8 ]] && echo echo || echo http)" "$f"; then
    stop_bg "$SRV_PID" "$SRV_SH"
    note_fail "$w" "$i" "$r" "$SRV_WHY" "$f.srv.err"
    return 1
  fi
  local limit=$((SECS + 30))
  if [[ $w == W8 ]]; then
    run_fg "$limit" "$f.out" "$f.err" "$GO_BIN" -load echo -addr "$SRV_ADDR" -c "$CONNS" -size 64 -d "$SECS"
    value=$(awk '$1 == "RESULT" && $2 == "W8" { print $3; exit }' "$f.out")
    ((RC == 0)) || why="load client: $(why_rc "$RC")"
  else
    run_fg "$limit" "$f.out" "$f.err" "$WRK" -t2 -c"$CONNS" -d"${SECS}s" --timeout 2s "http://$SRV_ADDR/"
    value=$(awk '$1 == "Requests/sec:" { print $2; exit }' "$f.out")
    ((RC == 0)) || why="wrk: $(why_rc "$RC")"
    # A correct server answers every request with a 200 and no socket error.
    local errs
    errs=$(grep -E '^ *(Socket errors|Non-2xx or 3xx responses):' "$f.out" | sed 's/^ *//' | tr '\n' ';')
    [[ -n $errs ]] && why="wrk: ${errs%;}"
  fi
  if ! alive "$SRV_PID"; then
    wait "$SRV_SH" 2>/dev/null
    why="server died during the load ($(why_rc "$(cat "$f.srv.out.rc" 2>/dev/null || echo 1)"))"
  elif ! probe "$w" "${SRV_ADDR#*:}"; then
    why="server does not answer after the load (hung?)${why:+; $why}"
  fi
  stop_bg "$SRV_PID" "$SRV_SH"
  if [[ -z $why && -n $value ]]; then
    record "$w" "$i" "$value" "$([[ $w == W8 ]] && echo rt/s || echo req/s)"
    return 0
  fi
  [[ -z $why ]] && why="no result"
  local errf="$f.srv.err"
  [[ -s $errf ]] || errf="$f.err"
  note_fail "$w" "$i" "$r" "$why" "$errf"
  return 1
}

echo "goro network and timer benchmarks: $RUNS runs per cell, median; servers and load share $(nproc) CPUs"
echo "  $(uname -srm)$(command -v go >/dev/null && echo ", $(go version | awk '{print $3}')")$(command -v "$LUA" >/dev/null && echo ", $("$LUA" -v 2>&1 | awk '{print $1, $2}')")$(command -v "$WRK" >/dev/null && echo ", $("$WRK" -v 2>&1 | awk 'NR == 1 { print $1, $2 }')"), load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"

for w in "${SEL[@]}"; do
  printf '  %-4s' "$w" >&2
  for ((r = 0; r < RUNS; r++)); do
    for ((k = 0; k < NIMPL; k++)); do
      i=$(((k + r) % NIMPL))            # rotate the order every round
      ((IMPL_OK[i])) || continue
      if [[ $w == W6 ]]; then run_w6 "$i" "$r"; else run_net "$w" "$i" "$r"; fi
      if (($? == 0)); then printf '.' >&2; else printf 'x' >&2; fi
    done
  done
  echo >&2
done

# --- the table --------------------------------------------------------------
declare -A CELL VALUE
declare -a ROWSEL=()
for row in "${ROWS[@]}"; do
  id=$(field "$row" 0); w=$(field "$row" 1)
  [[ " ${SEL[*]} " == *" $w "* ]] || continue
  ROWSEL+=("$row")
  fid=${id//\//_}
  for ((i = 0; i < NIMPL; i++)); do
    key="$id.$i"
    if ((!IMPL_OK[i])); then
      CELL[$key]="n/a"
    elif [[ -e $OUT/$fid.$i.failed ]]; then
      CELL[$key]="error"
      if [[ -s $OUT/$fid.$i.values ]]; then
        NOTES+=("$id ${IMPL_NAME[i]}: $(wc -l <"$OUT/$fid.$i.values") of $RUNS runs succeeded, median $(fmt_value "$(median <"$OUT/$fid.$i.values")") $(cat "$OUT/$fid.$i.unit")")
      fi
    elif [[ -s $OUT/$fid.$i.values ]]; then
      VALUE[$key]=$(median <"$OUT/$fid.$i.values")
      CELL[$key]="$(fmt_value "${VALUE[$key]}") $(cat "$OUT/$fid.$i.unit")"
    else
      CELL[$key]="-"
    fi
  done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
positive() { [[ -n ${1:-} ]] && awk -v b="$1" 'BEGIN { exit !(b > 0) }'; }
meets() {      # ratio target sense
  if [[ $3 == low ]]; then awk -v r="$1" -v t="$2" 'BEGIN { exit !(r <= t) }'
  else awk -v r="$1" -v t="$2" 'BEGIN { exit !(r >= t) }'; fi
}

declare -a HDR=("workload")
for ((i = 0; i < NIMPL; i++)); do HDR+=("${IMPL_NAME[i]}"); done
for ((i = 0; i < NIMPL; i++)); do ((i != BASE)) && HDR+=("${IMPL_NAME[i]}/Go"); done
HDR+=("goro/best Lua peer" "target")
declare -a TABLE=()
TABLE+=("$(join_cells "${HDR[@]}")")
for row in "${ROWSEL[@]}"; do
  id=$(field "$row" 0); label=$(field "$row" 2); sense=$(field "$row" 3); target=$(field "$row" 4)
  [[ $id == W6* && $SCALE != 1 ]] && label="$label (N=$W6_N)"
  cells=("$id $label")
  for ((i = 0; i < NIMPL; i++)); do cells+=("${CELL[$id.$i]}"); done
  b=${VALUE[$id.$BASE]:-}
  goro_ratio=""
  for ((i = 0; i < NIMPL; i++)); do
    ((i == BASE)) && continue
    a=${VALUE[$id.$i]:-}
    if [[ -n $a ]] && positive "$b"; then
      cells+=("$(ratio "$a" "$b")")
      ((i == GORO)) && goro_ratio=$(ratio "$a" "$b")
    else
      cells+=("-")
    fi
  done
  # goro against the best Lua peer (the fastest: W8, W9; the lowest: W6)
  best=""
  for p in $PEERS; do
    v=${VALUE[$id.$p]:-}
    [[ -n $v ]] || continue
    if [[ -z $best ]] || { [[ $sense == high ]] && awk -v v="$v" -v b="$best" 'BEGIN { exit !(v > b) }'; } ||
       { [[ $sense == low ]] && awk -v v="$v" -v b="$best" 'BEGIN { exit !(v < b) }'; }; then
      best=$v
    fi
  done
  peer_ratio=""
  g=${VALUE[$id.$GORO]:-}
  if [[ -n $g ]] && positive "$best"; then peer_ratio=$(ratio "$g" "$best"); cells+=("$peer_ratio"); else cells+=("-"); fi
  op=$([[ $sense == low ]] && echo "<=" || echo ">=")
  t="$op $target x Go"
  verdict=""
  if [[ -n $goro_ratio ]]; then
    meets "$goro_ratio" "$target" "$sense" && verdict=met || verdict=MISSED
  fi
  if [[ $id == W9 ]]; then
    t="$t, >= $W9_PEER_TARGET x peer"
    if [[ -n $peer_ratio && -n $verdict ]]; then
      meets "$peer_ratio" "$W9_PEER_TARGET" high || verdict=MISSED
    else
      verdict=""
    fi
  fi
  cells+=("$t${verdict:+ $verdict}")
  TABLE+=("$(join_cells "${cells[@]}")")
done

echo
print_table "${TABLE[@]}"
print_notes "${NOTES[@]}"
echo
echo "ratio = <column> / Go.  W6: lower is better (wall ms; worst lateness of one sleeper, ms);"
echo "W8, W9: higher is better (round trips/s; requests/s).  Targets apply to goro-lua; the best"
echo "Lua peer is the better of luv and cqueues (one thread each; goro and Go use every CPU)."
exit 0
