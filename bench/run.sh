#!/usr/bin/env bash
# `make bench`: the controller benchmarks (bench/run_bench.py) on the
# 1k and 10k VirtualService meshes, against the AVI simulator.
#   bench/run.sh [BUILD_DIR] [extra run_bench.py options]
set -euo pipefail
BUILD=${1:-build}
shift || true
cd "$(dirname "$0")/.."
exec /usr/bin/python3 bench/run_bench.py --amc "$BUILD/amc" "$@"
