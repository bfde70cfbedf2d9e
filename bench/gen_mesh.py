#!/usr/bin/python3
"""Generates a synthetic mesh for amc's benchmarks and scale tests.

N Gateways (istio-system), V VirtualServices spread over them, S Services
with one EndpointSlice each, E endpoints spread over the slices. Objects go
to JSON `kind: List` files:

  OUT/gateways/gw-<g>.json    a Gateway and the VirtualServices bound to it
  OUT/services/ns-<g>.json    the Services and EndpointSlices of namespace
                              app-<g> (the namespace of gateway g's routes)

Each VirtualService routes to two Services of its namespace (weights 80/20),
so every Service is used. The output is deterministic for given sizes.

  gen_mesh.py --gateways 100 --virtualservices 10000 --services 20000 \
      --endpoints 100000 --out /tmp/mesh
"""
import argparse
import json
import os


def gateway(g):
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "Gateway",
        "metadata": {"name": "gw-%d" % g, "namespace": "istio-system"},
        "spec": {
            "selector": {"istio": "ingressgateway"},
            "servers": [{
                "port": {"number": 80, "name": "http", "protocol": "HTTP"},
                "hosts": ["*.g%d.example.com" % g],
            }],
        },
    }


def virtualservice(g, v, svc_a, svc_b):
    ns = "app-%d" % g
    return {
        "apiVersion": "networking.istio.io/v1beta1",
        "kind": "VirtualService",
        "metadata": {"name": "vs-%d" % v, "namespace": ns},
        "spec": {
            "hosts": ["vs%d.g%d.example.com" % (v, g)],
            "gateways": ["istio-system/gw-%d" % g],
            "http": [{
                "name": "main",
                "match": [{"uri": {"prefix": "/"}}],
                "route": [
                    {"destination": {"host": svc_a, "port": {"number": 80}},
                     "weight": 80},
                    {"destination": {"host": svc_b, "port": {"number": 80}},
                     "weight": 20},
                ],
            }],
        },
    }


def service(ns, name):
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": {"app": name},
                 "ports": [{"name": "http", "port": 80,
                            "targetPort": 8080}]},
    }


def ip(n):
    return "10.%d.%d.%d" % ((n >> 16) & 255, (n >> 8) & 255, n & 255)


def endpointslice(ns, name, first_ip, count):
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name + "-abc", "namespace": ns,
                     "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [{"addresses": [ip(first_ip + i)],
                       "conditions": {"ready": True}}
                      for i in range(count)],
    }


def split(total, parts, i):
    """Size of part i when `total` is spread evenly over `parts`."""
    return total // parts + (1 if i < total % parts else 0)


def write_list(path, items):
    with open(path, "w") as fh:
        json.dump({"apiVersion": "v1", "kind": "List", "items": items}, fh,
                  separators=(",", ":"), sort_keys=True)
        fh.write("\n")


def generate(out, gateways, vss, services, endpoints):
    os.makedirs(os.path.join(out, "gateways"), exist_ok=True)
    os.makedirs(os.path.join(out, "services"), exist_ok=True)
    svc_no = 0
    ep_no = 0
    vs_no = 0
    counts = {"Gateway": 0, "VirtualService": 0, "Service": 0,
              "EndpointSlice": 0, "endpoints": 0}
    for g in range(gateways):
        ns = "app-%d" % g
        n_svc = max(1, split(services, gateways, g))
        names = ["svc-%d" % (svc_no + i) for i in range(n_svc)]
        svc_no += n_svc
        items = []
        for i, name in enumerate(names):
            n_ep = split(endpoints, services, svc_no - n_svc + i)
            items.append(service(ns, name))
            items.append(endpointslice(ns, name, ep_no, n_ep))
            ep_no += n_ep
            counts["Service"] += 1
            counts["EndpointSlice"] += 1
            counts["endpoints"] += n_ep
        write_list(os.path.join(out, "services", "ns-%d.json" % g), items)
        gw_items = [gateway(g)]
        counts["Gateway"] += 1
        n_vs = split(vss, gateways, g)
        for j in range(n_vs):
            a = names[(2 * j) % len(names)]
            b = names[(2 * j + 1) % len(names)]
            gw_items.append(virtualservice(g, vs_no, a, b))
            vs_no += 1
            counts["VirtualService"] += 1
        write_list(os.path.join(out, "gateways", "gw-%d.json" % g), gw_items)
    return counts


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gateways", type=int, default=10)
    ap.add_argument("--virtualservices", type=int, default=100)
    ap.add_argument("--services", type=int, default=200)
    ap.add_argument("--endpoints", type=int, default=1000)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    counts = generate(a.out, a.gateways, a.virtualservices, a.services,
                      a.endpoints)
    print(json.dumps(counts, sort_keys=True))


if __name__ == "__main__":
    main()
