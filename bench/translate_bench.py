#!/usr/bin/python3
"""Throughput of `amc translate` on a synthetic mesh.

Generates G gateways; per gateway one VirtualService with R routes, each
route to its own Service with an EndpointSlice of E endpoints (so a
gateway "owns" 1 + 1 + R*2 input objects), writes them as YAML and as
JSON, runs `amc translate --stats` on each a few times and reports input
objects per second (CPU time of the whole command: parse, store, rules,
output; best of --runs) and the phase timings --stats reports (wall clock,
so they include any time the process waited for the CPU).

The rules find a Gateway's VirtualServices (and a Service's
EndpointSlices) through the store's field indexes, so the cost grows with
the mesh, not with gateways x VirtualServices; --gateways 200 --routes 10
checks that. docs/benchmarks.md ("Translate throughput") has the figures
and how to count instructions instead of wall time on a shared machine.

  bench/translate_bench.py [--amc build/amc] [--rules rules]
                           [--gateways 20] [--routes 25] [--endpoints 4]
                           [--runs 3]
"""

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time


def mesh(gateways, routes, endpoints):
    objs = []
    for g in range(gateways):
        ns = "ns%d" % g
        objs.append({
            "apiVersion": "networking.istio.io/v1beta1", "kind": "Gateway",
            "metadata": {"name": "gw%d" % g, "namespace": ns},
            "spec": {"selector": {"istio": "ingressgateway"},
                     "servers": [{"port": {"number": 80, "name": "http",
                                           "protocol": "HTTP"},
                                  "hosts": ["app%d.example.com" % g]}]}})
        http = []
        for r in range(routes):
            svc = "svc%d" % r
            http.append({"match": [{"uri": {"prefix": "/r%d" % r}}],
                         "route": [{"destination": {
                             "host": svc, "port": {"number": 80}}}]})
            objs.append({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": svc, "namespace": ns},
                "spec": {"selector": {"app": svc},
                         "ports": [{"name": "http", "port": 80,
                                    "targetPort": 8080}]}})
            objs.append({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": svc + "-abc", "namespace": ns,
                             "labels": {"kubernetes.io/service-name": svc}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                "endpoints": [{"addresses": ["10.%d.%d.%d" % (g % 250, r, e)],
                               "conditions": {"ready": True}}
                              for e in range(endpoints)]})
        objs.append({
            "apiVersion": "networking.istio.io/v1beta1",
            "kind": "VirtualService",
            "metadata": {"name": "vs%d" % g, "namespace": ns},
            "spec": {"hosts": ["app%d.example.com" % g],
                     "gateways": ["gw%d" % g], "http": http}})
    return objs


def to_yaml(v, indent=0):
    """A small YAML writer (block style) so the bench needs no PyYAML."""
    pad = "  " * indent
    if isinstance(v, dict):
        if not v:
            return "{}"
        out = []
        for k, x in v.items():
            if isinstance(x, (dict, list)) and x:
                out.append("%s%s:\n%s" % (pad, k, to_yaml(x, indent + 1)))
            else:
                out.append("%s%s: %s" % (pad, k, to_yaml(x, indent + 1)))
        return "\n".join(out)
    if isinstance(v, list):
        if not v:
            return "[]"
        out = []
        for x in v:
            body = to_yaml(x, indent + 1)
            if isinstance(x, (dict, list)) and x:
                out.append("%s- %s" % (pad, body.lstrip()))
            else:
                out.append("%s- %s" % (pad, body))
        return "\n".join(out)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    return json.dumps(v)  # quoted string


def run(amc, rules, path):
    """Returns (CPU seconds of the child, --stats match). CPU time (user +
    sys) rather than wall time: the machine may be shared."""
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run([amc, "translate", "--stats", "--rules", rules, path],
                       capture_output=True, text=True)
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    if p.returncode != 0:
        sys.exit("amc translate failed (%d): %s" % (p.returncode, p.stderr))
    m = re.search(r"(\d+) objects loaded in ([\d.]+) ms, rules loaded in "
                  r"([\d.]+) ms, (\d+) gateways translated into (\d+) AVI "
                  r"objects in ([\d.]+) ms, output rendered in ([\d.]+) ms",
                  p.stderr)
    return wall, m


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--amc", default="build/amc")
    ap.add_argument("--rules", default="rules")
    ap.add_argument("--gateways", type=int, default=20)
    ap.add_argument("--routes", type=int, default=25)
    ap.add_argument("--endpoints", type=int, default=4)
    ap.add_argument("--runs", type=int, default=3)
    a = ap.parse_args()
    objs = mesh(a.gateways, a.routes, a.endpoints)
    tmp = tempfile.mkdtemp(prefix="amc-bench-")
    try:
        ypath = os.path.join(tmp, "mesh.yaml")
        with open(ypath, "w") as f:
            f.write("\n---\n".join(to_yaml(o) for o in objs) + "\n")
        jpath = os.path.join(tmp, "mesh.json")
        with open(jpath, "w") as f:
            json.dump(objs, f)
        print("mesh: %d gateways x %d routes x %d endpoints = %d input "
              "objects (%.1f MB YAML, %.1f MB JSON)" % (
                  a.gateways, a.routes, a.endpoints, len(objs),
                  os.path.getsize(ypath) / 1e6, os.path.getsize(jpath) / 1e6))
        for label, path in (("yaml", ypath), ("json", jpath)):
            best = None
            for _ in range(a.runs):
                wall, m = run(a.amc, a.rules, path)
                if best is None or wall < best[0]:
                    best = (wall, m)
            wall, m = best
            n = int(m.group(1))
            load_ms, rules_ms, tr_ms, out_ms = (float(m.group(i))
                                                for i in (2, 3, 6, 7))
            print("%s: %.0f objects/s end to end (%.2f s CPU); load %.0f ms "
                  "(%.0f objects/s), rules load %.0f ms, translate %.0f ms "
                  "(%.0f input objects/s, %s gateways -> %s AVI objects), "
                  "output %.0f ms" % (
                      label, n / wall, wall, load_ms, n / (load_ms / 1e3),
                      rules_ms, tr_ms, n / max(tr_ms / 1e3, 1e-9),
                      m.group(4), m.group(5), out_ms))
    finally:
        shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
