#!/usr/bin/env bash
# The JSON codec's micro-benchmark (bench/json_bench.c) on bookinfo's
# objects, a generated mesh's VirtualService and pool, and their AVI
# objects.
#   bench/json_bench.sh [BUILD_DIR] [--callgrind]
# Without --callgrind: nanoseconds per object (ITERS rounds). With it:
# instructions per object, from callgrind's inclusive cost of each
# bench_<op> function (one valgrind run per set, few rounds).
set -euo pipefail
BUILD=${1:-build}
CG=${2:-}
cd "$(dirname "$0")/.."
TMP=$(mktemp -d /tmp/json_bench.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
/usr/bin/python3 bench/gen_mesh.py --gateways 10 --virtualservices 100 \
  --services 200 --endpoints 1000 --out "$TMP/mesh" >/dev/null
"$BUILD/amc" translate --rules rules examples/bookinfo >"$TMP/book-avi.json"
"$BUILD/amc" translate --rules rules "$TMP/mesh" >"$TMP/mesh-avi.json"
SETS=(
  "book-k8s=k8s:examples/bookinfo"
  "book-avi=avi:$TMP/book-avi.json"
  "mesh-vs=k8s:$TMP/mesh/gateways/gw-0.json:VirtualService"
  "mesh-pool=avi:$TMP/mesh-avi.json:pool"
  "mesh-vsvip=avi:$TMP/mesh-avi.json:virtualservice"
)
if [ "$CG" != "--callgrind" ]; then
  exec "$BUILD/bench/json_bench" 2000 "${SETS[@]}"
fi
ITERS=20
printf '%-12s %6s %8s %10s %10s %10s %12s  (instructions per object)\n' \
  set objs bytes decode push encode encode_tape
for s in "${SETS[@]}"; do
  line=$("$BUILD/bench/json_bench" 1 "$s" | tail -1)
  read -r name objs bytes _ <<<"$line"
  valgrind --tool=callgrind --callgrind-out-file="$TMP/cg" \
    "$BUILD/bench/json_bench" $ITERS "$s" >/dev/null 2>&1
  callgrind_annotate --inclusive=yes "$TMP/cg" 2>/dev/null >"$TMP/ann"
  row="$name $objs $bytes"
  for op in decode push encode encode_tape; do
    ir=$(grep -E "json_bench.c:bench_${op} " "$TMP/ann" | head -1 |
         awk '{gsub(",","",$1); print $1}')
    row="$row $(( ${ir:-0} / (ITERS * objs) ))"
  done
  printf '%-12s %6s %8s %10s %10s %10s %12s\n' $row
done
