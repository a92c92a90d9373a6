#!/bin/sh
# make demo: start examples/httpd.lua on a free port of 127.0.0.1, load it
# with examples/hey.lua for a few seconds, print hey's report, and stop the
# server, whatever happens.
#
#   examples/demo.sh BUILD_DIR [SECONDS] [CONNECTIONS]
set -eu
build=${1:?usage: examples/demo.sh BUILD_DIR [SECONDS] [CONNECTIONS]}
seconds=${2:-3}
conns=${3:-50}
here=$(cd "$(dirname "$0")" && pwd)
export LUA_CPATH="$build/?.so;;"

log=$(mktemp)
server=""
cleanup() {
  status=$?
  if [ -n "$server" ]; then
    kill "$server" 2>/dev/null || true
    wait "$server" 2>/dev/null || true
  fi
  rm -f "$log"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Port 0: the kernel picks a free port; httpd.lua prints the address.
lua5.4 "$here/httpd.lua" -a 127.0.0.1:0 -r "$here/www" >"$log" 2>&1 &
server=$!
url=""
for _ in $(seq 100); do   # up to 10 s for it to listen
  url=$(sed -n 's/^httpd: serving .* on \(http:[^ ]*\)$/\1/p' "$log")
  [ -n "$url" ] && break
  kill -0 "$server" 2>/dev/null || { cat "$log" >&2; echo "demo: httpd.lua did not start" >&2; exit 1; }
  sleep 0.1
done
[ -n "$url" ] || { cat "$log" >&2; echo "demo: httpd.lua did not start in 10 s" >&2; exit 1; }

echo "demo: examples/httpd.lua serves examples/www on $url"
echo "demo: examples/hey.lua -z ${seconds}s -c $conns $url"
echo
lua5.4 "$here/hey.lua" -z "${seconds}s" -c "$conns" "$url"
