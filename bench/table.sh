# bench/table.sh — what bench/run.sh and bench/net.sh share: formatting a
# value, the median of runs, and printing a table.  Sourced, not run.

fmt_value() {   # value -> 3 significant-ish digits
  awk -v v="$1" 'BEGIN { a = v < 0 ? -v : v;
    if (a >= 100) printf "%.0f", v; else if (a >= 10) printf "%.1f", v; else printf "%.2f", v }'
}

median() {   # values on stdin, one a line
  sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) exit 1;
    if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

join_cells() { local IFS=$'\x1f'; echo "$*"; }

# print_table LINE...: each LINE is a row's cells joined by join_cells, the
# first the header.  The first column is left-aligned, the others right;
# a rule under the header.
print_table() {
  local -a wid=() c
  local line out sep j len ncol=0 first=1
  for line in "$@"; do
    IFS=$'\x1f' read -r -a c <<<"$line"
    ((${#c[@]} > ncol)) && ncol=${#c[@]}
    for ((j = 0; j < ${#c[@]}; j++)); do
      len=${#c[j]}
      ((len > ${wid[j]:-0})) && wid[j]=$len
    done
  done
  for line in "$@"; do
    IFS=$'\x1f' read -r -a c <<<"$line"
    out=""
    for ((j = 0; j < ncol; j++)); do
      if ((j == 0)); then out+=$(printf '%-*s' "${wid[j]}" "${c[j]:-}")
      else out+=" | "$(printf '%*s' "${wid[j]}" "${c[j]:-}"); fi
    done
    echo "$out"
    if ((first)); then
      sep=""
      for ((j = 0; j < ncol; j++)); do
        ((j > 0)) && sep+="-|-"
        sep+=$(printf '%*s' "${wid[j]}" '' | tr ' ' '-')
      done
      echo "$sep"
      first=0
    fi
  done
}

# print_notes NOTE...: a blank line and "note: NOTE" each, if any.
print_notes() {
  (($# > 0)) || return 0
  echo
  local n
  for n in "$@"; do echo "note: $n"; done
}
