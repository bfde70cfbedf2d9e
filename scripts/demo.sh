#!/usr/bin/env bash
# The main job on its embedded default: translate the shipped examples.
# (Becomes: AVI simulator + `amc run` on fs://examples once `amc run` exists.)
set -euo pipefail
BUILD=${1:-build}
"$BUILD/amc" translate examples/
