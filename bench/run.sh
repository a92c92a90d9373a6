#!/usr/bin/env bash
# bench/run.sh — run goro's benchmark suite side by side with Go; print one table.
# Columns: goro (C tasks), Go, goro-lua (Lua goroutines on goro) and lua-coro
# (plain Lua coroutines with a scheduler in Lua: the single-threaded floor).
#
#   bench/run.sh [WORKLOAD...]      e.g.  bench/run.sh W1 W2/1P W7
#
# A workload argument is a row id (W2/1P) or a workload (W2: all its rows).
# Default: every row whose workload the goro binary supports (its -list).
# Builds nothing: `make bench` (mk/bench.mk) builds the binaries first.
#
# Environment:
#   BENCH_RUNS     runs per implementation and row (default 5); the median is shown
#   BENCH_TIMEOUT  seconds before one run counts as failed (default 300)
#   BENCH_PROCS    Ps / GOMAXPROCS of rows without their own (default: nproc)
#   BENCH_SCALE    multiply every N by this (default 1; e.g. 0.1 for a quick look)
#   BENCH_GORO     goro's binary (default build/release/bench_goro)
#   BENCH_GO       Go's binary   (default build/bench_go)
#   BENCH_LUA      the Lua interpreter of the Lua columns (default lua5.4)
#   BENCH_LUA_MOD  goro's Lua module (default build/release/goro.so); its
#                  directory becomes LUA_CPATH
#
# Runs alternate between implementations (goro, Go, goro-lua, lua-coro,
# goro, ... with the order rotated each round), so that noise on the machine
# hits all alike.
# A run that exits non-zero, times out or prints no RESULT line puts `error`
# in its cell; the reason is printed under the table.
#
# Adding an implementation: give it a binary or script taking
# `-w W -n N -procs P` and printing `RESULT <w> <value> <unit>`, and append
# one line to IMPLS below; it becomes one more column, plus one more ratio
# column against the base implementation.

set -u
cd "$(dirname "$0")/.." || exit 1
. bench/table.sh

RUNS=${BENCH_RUNS:-5}
TIMEOUT=${BENCH_TIMEOUT:-300}
PROCS=${BENCH_PROCS:-$(nproc 2>/dev/null || echo 1)}
SCALE=${BENCH_SCALE:-1}
GORO_BIN=${BENCH_GORO:-build/release/bench_goro}
GO_BIN=${BENCH_GO:-build/bench_go}
LUA=${BENCH_LUA:-lua5.4}
LUA_MOD=${BENCH_LUA_MOD:-build/release/goro.so}
# Only the Lua columns read it; ";;" keeps Lua's default path after it.
export LUA_CPATH="$(dirname "$LUA_MOD")/?.so;;"
GORO_LUA=bench/lua/goro_bench.lua
CORO_LUA=bench/lua/coro_bench.lua

# --- implementations --------------------------------------------------------
# name | what must exist (empty: nothing; words: a path with a / is a file,
# executable unless it ends in .so or .lua; a bare name is a command on PATH)
# | command listing its workloads (empty: all) | command template ({w} {n}
# {p} are substituted)
IMPLS=(
  "goro|$GORO_BIN|$GORO_BIN -list|$GORO_BIN -w {w} -n {n} -procs {p}"
  "Go|$GO_BIN|$GO_BIN -list|$GO_BIN -w {w} -n {n} -procs {p}"
  "goro-lua|$LUA $LUA_MOD $GORO_LUA|$LUA $GORO_LUA -list|$LUA $GORO_LUA -w {w} -n {n} -procs {p}"
  "lua-coro|$LUA $CORO_LUA|$LUA $CORO_LUA -list|$LUA $CORO_LUA -w {w} -n {n} -procs {p}"
)
# Ratios are <impl>/<BASE>, for every implementation but BASE; the target
# column applies to the first implementation's ratio.
BASE=Go

# --- rows -------------------------------------------------------------------
# id | workload | N | Ps (empty: $PROCS) | label | target ratio (<=)
ROWS=(
  "W1|W1|1000000||spawn+finish 1M|0.7"
  "W2/1P|W2|1000000|1|ping-pong 1M, 1 P|0.5"
  "W2/2P|W2|1000000|2|ping-pong 1M, 2 Ps|0.5"
  "W3|W3|10000000||chan cap 1024, 10M items|1.0"
  "W4|W4|4000000||4 producers, select, 4M items|1.0"
  "W5|W5|1000000||1M parked tasks|1.7"
  "W7|W7|10000000||thread-ring 503, 10M hops|0.5"
)

# -----------------------------------------------------------------------------

field() { local IFS='|'; local a; read -r -a a <<<"$1"; printf '%s' "${a[$2]:-}"; }

NIMPL=${#IMPLS[@]}
declare -a IMPL_NAME IMPL_OK IMPL_LIST IMPL_CMD
for ((i = 0; i < NIMPL; i++)); do
  IMPL_NAME[i]=$(field "${IMPLS[i]}" 0)
  bin=$(field "${IMPLS[i]}" 1)
  listcmd=$(field "${IMPLS[i]}" 2)
  IMPL_CMD[i]=$(field "${IMPLS[i]}" 3)
  IMPL_OK[i]=1
  IMPL_LIST[i]=""
  for need in $bin; do
    if [[ $need != */* ]]; then
      command -v "$need" >/dev/null 2>&1 && continue
      why="$need is not on PATH"
    elif [[ $need == *.so || $need == *.lua ]]; then
      [[ -r $need ]] && continue
      why="$need not found"
      [[ $need == *.so ]] && why="$need not built"
    else
      [[ -x $need ]] && continue
      why="$need not built"
    fi
    IMPL_OK[i]=0
    echo "note: ${IMPL_NAME[i]}: $why; its column is skipped"
    break
  done
  if ((!IMPL_OK[i])); then
    :
  elif [[ -n $listcmd ]]; then
    if ! IMPL_LIST[i]=" $($listcmd 2>/dev/null | tr '\n' ' ') "; then
      IMPL_LIST[i]=" "
    fi
  else
    IMPL_LIST[i]="*"
  fi
done

impl_supports() {   # impl-index workload
  [[ ${IMPL_OK[$1]} == 1 ]] || return 1
  [[ ${IMPL_LIST[$1]} == "*" || ${IMPL_LIST[$1]} == *" $2 "* ]]
}

# Which rows to run.
declare -a SEL=()
if (($# > 0)); then
  for arg in "$@"; do
    found=0
    for row in "${ROWS[@]}"; do
      id=$(field "$row" 0); w=$(field "$row" 1)
      if [[ $arg == "$id" || $arg == "$w" ]]; then SEL+=("$row"); found=1; fi
    done
    ((found)) || echo "note: unknown workload $arg, ignored"
  done
else
  for row in "${ROWS[@]}"; do
    w=$(field "$row" 1)
    # Default: what goro supports (all, if goro is not built).
    if [[ ${IMPL_OK[0]} != 1 ]] || impl_supports 0 "$w"; then SEL+=("$row"); fi
  done
fi
if ((${#SEL[@]} == 0)); then
  echo "bench: no workload to run" >&2
  exit 1
fi

scale_n() { awk -v n="$1" -v s="$SCALE" 'BEGIN { v = int(n * s); if (v < 1) v = 1; print v }'; }

# W5 on a kernel without guard regions (MADV_GUARD_INSTALL, Linux 6.13)
# needs two mappings per C task (stack + mprotect'ed guard page): check
# max_map_count there.  With guard regions goro maps 32 stacks per mapping.
W5_N=""
W5_NOTE=""
MMC_FILE=${BENCH_MMC_FILE:-/proc/sys/vm/max_map_count}   # a test hook
guard_regions() {
  uname -r | awk -F'[.-]' '{ exit !($1 > 6 || ($1 == 6 && $2 >= 13)) }'
}
for row in "${SEL[@]}"; do
  [[ $(field "$row" 1) == W5 ]] || continue
  [[ -z ${BENCH_MMC_FILE:-} ]] && guard_regions && continue
  want=$(scale_n "$(field "$row" 2)")
  need=$((2 * want + 100000))
  mmc=$(cat "$MMC_FILE" 2>/dev/null || echo 65530)
  if ((mmc < need)); then
    raised=0
    if [[ $(id -u) == 0 ]]; then
      newv=$((need > 2200000 ? need : 2200000))
      if echo "$newv" 2>/dev/null >"$MMC_FILE"; then
        echo "note: W5: raised vm.max_map_count from $mmc to $newv (each C task's stack is 2 mappings)"
        raised=1
      else
        echo "note: W5: running as root but could not write $MMC_FILE"
      fi
    else
      echo "note: W5: vm.max_map_count is $mmc, too low for $want tasks (2 mappings each), and this is not root;"
      echo "      raise it with: sudo sysctl -w vm.max_map_count=2200000"
    fi
    if ((!raised)); then
      W5_N=$((mmc / 2 - 10000))
      ((W5_N < 1000)) && W5_N=1000
      W5_NOTE="N=$W5_N, max_map_count=$mmc"
      echo "      W5 runs with N=$W5_N (every implementation) instead"
    fi
  fi
done

OUT=$(mktemp -d "${TMPDIR:-/tmp}/goro-bench.XXXXXX") || exit 1
trap 'rm -rf "$OUT"' EXIT

declare -a NOTES=()
declare -A CELL VALUE UNIT

echo "goro benchmarks: $RUNS runs per cell, median; Ps = $PROCS unless the row says; $(nproc) CPUs"
echo "  $(uname -srm)$(command -v go >/dev/null && echo ", $(go version | awk '{print $3}')")$(command -v "$LUA" >/dev/null && echo ", $("$LUA" -v 2>&1 | awk '{print $1, $2}')"), load average $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null)"

for row in "${SEL[@]}"; do
  id=$(field "$row" 0); w=$(field "$row" 1); p=$(field "$row" 3)
  n=$(scale_n "$(field "$row" 2)")
  [[ $w == W5 && -n $W5_N ]] && n=$W5_N
  [[ -z $p ]] && p=$PROCS
  fid=${id//\//_}                      # W2/1P -> W2_1P, for file names
  printf '  %-6s' "$id" >&2
  for ((r = 0; r < RUNS; r++)); do
    for ((k = 0; k < NIMPL; k++)); do
      i=$(((k + r) % NIMPL))            # rotate the order every round
      impl_supports "$i" "$w" || continue
      cmd=${IMPL_CMD[i]//\{w\}/$w}; cmd=${cmd//\{n\}/$n}; cmd=${cmd//\{p\}/$p}
      f="$OUT/$fid.$i.$r"
      # In a subshell whose stderr is dropped: bash's own "Segmentation
      # fault" message goes there, not over the progress line.
      ( timeout -k 10 "$TIMEOUT" $cmd >"$f.out" 2>"$f.err"; echo $? >"$f.rc" ) 2>/dev/null
      rc=$(cat "$f.rc" 2>/dev/null || echo 1)
      res=$(awk -v w="$w" '$1 == "RESULT" && $2 == w { print $3, $4; exit }' "$f.out")
      if ((rc == 0)) && [[ -n $res ]]; then
        echo "${res%% *}" >>"$OUT/$fid.$i.values"
        echo "${res#* }" >"$OUT/$fid.$i.unit"
        printf '.' >&2
      else
        why="exit $rc"
        ((rc == 124 || rc == 137)) && why="timed out after ${TIMEOUT}s"
        ((rc > 128 && rc != 137)) && why="killed by signal $((rc - 128))"
        ((rc == 0)) && why="no RESULT line"
        last=$(grep -v '^$' "$f.err" | tail -n 1)
        NOTES+=("$id ${IMPL_NAME[i]}: run $((r + 1)) failed ($why)${last:+: $last}")
        touch "$OUT/$fid.$i.failed"
        printf 'x' >&2
      fi
    done
  done
  echo >&2
  for ((i = 0; i < NIMPL; i++)); do
    key="$id.$i"; fkey="$fid.$i"
    if ! impl_supports "$i" "$w"; then
      CELL[$key]="n/a"
    elif [[ -e $OUT/$fkey.failed ]]; then
      CELL[$key]="error"
      if [[ -s $OUT/$fkey.values ]]; then
        ok=$(wc -l <"$OUT/$fkey.values")
        NOTES+=("$id ${IMPL_NAME[i]}: $ok of $RUNS runs succeeded, median $(fmt_value "$(median <"$OUT/$fkey.values")") $(cat "$OUT/$fkey.unit")")
      fi
    else
      VALUE[$key]=$(median <"$OUT/$fkey.values")
      UNIT[$key]=$(cat "$OUT/$fkey.unit")
      CELL[$key]="$(fmt_value "${VALUE[$key]}") ${UNIT[$key]}"
    fi
  done
done

# --- the table -------------------------------------------------------------
base=-1
for ((i = 0; i < NIMPL; i++)); do [[ ${IMPL_NAME[i]} == "$BASE" ]] && base=$i; done

declare -a HDR=("workload")
for ((i = 0; i < NIMPL; i++)); do HDR+=("${IMPL_NAME[i]}"); done
for ((i = 0; i < NIMPL; i++)); do ((i != base)) && HDR+=("${IMPL_NAME[i]}/$BASE"); done
HDR+=("target")

declare -a TABLE=()   # rows of cells joined by \x1f
TABLE+=("$(join_cells "${HDR[@]}")")
for row in "${SEL[@]}"; do
  id=$(field "$row" 0); w=$(field "$row" 1); label=$(field "$row" 4); target=$(field "$row" 5)
  [[ $w == W5 && -n $W5_NOTE ]] && label="parked tasks ($W5_NOTE)"
  [[ $SCALE != 1 && ! ($w == W5 && -n $W5_NOTE) ]] && label="$label (N x $SCALE)"
  cells=("$id $label")
  for ((i = 0; i < NIMPL; i++)); do cells+=("${CELL[$id.$i]}"); done
  verdict=""
  for ((i = 0; i < NIMPL; i++)); do
    ((i == base)) && continue
    a=${VALUE[$id.$i]:-}; b=""
    ((base >= 0)) && b=${VALUE[$id.$base]:-}
    if [[ -n $a && -n $b ]] && awk -v b="$b" 'BEGIN { exit !(b > 0) }'; then
      ratio=$(awk -v a="$a" -v b="$b" 'BEGIN { printf "%.2f", a / b }')
      cells+=("$ratio")
      if ((i == 0)) && [[ -n $target ]]; then
        if awk -v r="$ratio" -v t="$target" 'BEGIN { exit !(r <= t) }'; then
          verdict=" met"
        else
          verdict=" MISSED"
        fi
      fi
    else
      cells+=("-")
    fi
  done
  cells+=("${target:+<= $target}$verdict")
  TABLE+=("$(join_cells "${cells[@]}")")
done

echo
print_table "${TABLE[@]}"
print_notes "${NOTES[@]}"
echo
echo "ratio = <column> / Go: time per operation (lower is better), or bytes per task for W5;"
echo "the target is goro's (C tasks).  goro-lua: Lua goroutines on goro; lua-coro: plain Lua"
echo "coroutines and a scheduler in Lua, one thread (bench/lua/)."
exit 0
