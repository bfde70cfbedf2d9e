# syntax=docker/dockerfile:1
# amc container image: `docker build -t amc:dev .` from the repository root.
#
#   build    debian 12 slim + the build packages of scripts/install-deps.sh;
#            cmake builds only the `amc` binary (no tests, no sanitizers)
#   runtime  debian 12 slim + the shared libraries amc links, nothing else
#
# Runs as the numeric user 65532 (no shell, no home) and needs no writable
# root filesystem. The shipped rules are baked in at /usr/share/amc/rules, the
# directory amc uses when `--rules` is not given; a ConfigMap mounted as a
# directory elsewhere (deploy/ uses /etc/amc/rules with `--rules`) overrides
# them and is hot-reloaded when the kubelet swaps its `..data` symlink.
#
# Reproducible from the repository: the context is only the files the build
# needs (.dockerignore), the base image is pinned, timestamps come from
# SOURCE_DATE_EPOCH, and source paths are mapped out of the binary.
# Checked by tests/integration/test_dockerfile.py (there is no Docker engine
# in CI; keep this file plain: one RUN per stage, no URLs, no ADD).

ARG DEBIAN_IMAGE=debian:12.11-slim

FROM ${DEBIAN_IMAGE} AS build
ARG SOURCE_DATE_EPOCH=0
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake pkg-config \
      liblua5.4-dev libuv1-dev libcurl4-openssl-dev libyaml-dev \
      libprotobuf-c-dev protobuf-c-compiler protobuf-compiler libprotobuf-dev \
      libnghttp2-dev libssl-dev libmicrohttpd-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY CMakeLists.txt ./
COPY cmake/ cmake/
COPY proto/ proto/
COPY runtime/ runtime/
RUN cmake -S . -B build -DAMC_TESTS=OFF -DAMC_SANITIZE=OFF \
      -DCMAKE_BUILD_TYPE=Release \
      "-DCMAKE_C_FLAGS=-ffile-prefix-map=/src/=" \
 && cmake --build build -j"$(nproc)" --target amc \
 && strip --strip-unneeded build/amc \
 && build/amc version

FROM ${DEBIAN_IMAGE} AS runtime
ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates \
      liblua5.4-0 libuv1 libcurl4 libyaml-0-2 libprotobuf-c1 \
      libnghttp2-14 libssl3 libmicrohttpd12 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --gid 65532 amc \
 && useradd --uid 65532 --gid 65532 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin amc
COPY --from=build /src/build/amc /usr/bin/amc
COPY rules/ /usr/share/amc/rules/
LABEL org.opencontainers.image.title="amc" \
      org.opencontainers.image.description="AVI Mesh Controller: Istio config to AVI, with Lua rules"
USER 65532:65532
WORKDIR /
# Admin HTTP: /healthz, /readyz, /metrics (amc run --admin-port).
EXPOSE 8081
ENTRYPOINT ["amc", "run"]
