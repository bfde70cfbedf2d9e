#!/usr/bin/env bash
# `make demo`: amc's main job on its embedded default, end to end.
#   1. starts the AVI simulator (tests/fakes/avi/avisim.py) on loopback;
#   2. runs `amc run` on fs://examples against it;
#   3. waits until amc is synced (/readyz answers 200);
#   4. prints a readable summary of the AVI objects created, per gateway;
#   5. stops both (also on failure or Ctrl-C).
set -euo pipefail
BUILD=${1:-build}
AMC="$BUILD/amc"
PY=/usr/bin/python3
cd "$(dirname "$0")/.."

work=$(mktemp -d -t amc-demo-XXXXXX)
sim_pid=""
amc_pid=""
cleanup() {
  [ -n "$amc_pid" ] && kill -TERM "$amc_pid" 2>/dev/null && wait "$amc_pid" 2>/dev/null || true
  [ -n "$sim_pid" ] && kill -TERM "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT INT TERM

# A throwaway password for this run only.
password=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')

echo "== starting the AVI simulator"
"$PY" tests/fakes/avi/avisim.py --http-port 0 --no-https \
  --port-file "$work/sim.json" --username admin --password "$password" \
  --exit-with-parent >"$work/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 200); do [ -s "$work/sim.json" ] && break; sleep 0.05; done
[ -s "$work/sim.json" ] || { echo "simulator did not start"; cat "$work/sim.log"; exit 1; }
sim_port=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["http"])' "$work/sim.json")
echo "   AVI simulator on http://127.0.0.1:$sim_port"

echo "== amc run --source fs://examples --avi-url http://127.0.0.1:$sim_port"
CTRL_PASSWORD="$password" "$AMC" run --source fs://examples \
  --avi-url "http://127.0.0.1:$sim_port" --avi-username admin \
  --admin-addr 127.0.0.1 --admin-port 0 --admin-port-file "$work/admin.port" \
  >"$work/amc.out" 2>"$work/amc.log" &
amc_pid=$!

ready=""
for _ in $(seq 600); do
  if ! kill -0 "$amc_pid" 2>/dev/null; then break; fi
  if [ -s "$work/admin.port" ]; then
    port=$(cat "$work/admin.port")
    if "$PY" - "$port" <<'EOF' 2>/dev/null; then ready=1; break; fi
import http.client, sys
c = http.client.HTTPConnection("127.0.0.1", int(sys.argv[1]), timeout=2)
c.request("GET", "/readyz")
sys.exit(0 if c.getresponse().status == 200 else 1)
EOF
  fi
  sleep 0.1
done
if [ -z "$ready" ]; then
  echo "amc did not become ready; its log:"
  cat "$work/amc.log"
  exit 1
fi
grep -E 'event=(sync.initial_done|avi.synced|avi.gc_done)' "$work/amc.log" | sed 's/^/   /' || true

echo
echo "== AVI objects created by amc"
"$PY" scripts/avi_summary.py --port-file "$work/sim.json"

echo "== stopping"
kill -TERM "$amc_pid"
wait "$amc_pid" && echo "   amc exited with status 0"
amc_pid=""
