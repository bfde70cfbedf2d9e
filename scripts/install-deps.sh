#!/usr/bin/env bash
# Installs the Debian 12 packages amc needs to build, test and run its demo.
# Idempotent and quiet when everything is present; needs root (or sudo).
set -euo pipefail

PACKAGES=(
  # build
  build-essential cmake pkg-config
  liblua5.4-dev lua5.4 lua-cjson lua-cjson-dev
  libuv1-dev libcurl4-openssl-dev libyaml-dev
  libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libprotobuf-dev
  libnghttp2-dev libssl-dev libmicrohttpd-dev
  # tests
  libcmocka-dev lua-busted clang libclang-rt-14-dev
  python3 python3-grpcio python3-protobuf python3-yaml openssl curl
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" \
    || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
