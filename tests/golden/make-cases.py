#!/usr/bin/python3
"""Writes tests/golden/cases/<case>/input.yaml from the definitions below.

The inputs are generated so that the shared app (namespaces, pods, services,
endpoint slices) stays identical across cases; each case adds its Istio
objects. Re-run after editing; expected.json comes from
`amc rules test --update` (or tests/lua/golden_spec.lua's writer).
"""
import base64
import os
import sys

import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
CASES = os.path.join(HERE, "cases")
EXAMPLES = os.path.join(HERE, "..", "..", "examples", "bookinfo")


def load_secret_data():
    with open(os.path.join(EXAMPLES, "20-gateway.yaml")) as f:
        for d in yaml.safe_load_all(f):
            if d and d.get("kind") == "Secret":
                return d["data"]
    raise SystemExit("no Secret in examples")


TLS = load_secret_data()


def pod(name, labels, ip, ready=True, ports=None):
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "shop", "labels": labels},
            "spec": {"containers": [{"name": "app", "ports": ports or
                                     [{"name": "http", "containerPort": 8080}]}]},
            "status": {"podIP": ip, "conditions": [
                {"type": "Ready", "status": "True" if ready else "False"}]}}


def service(name, selector, ports, ns="shop"):
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": selector, "ports": ports}}


def slice_(svc, ports, endpoints, ns="shop", suffix="x1"):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": svc + "-" + suffix, "namespace": ns,
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4", "ports": ports,
            "endpoints": [{"addresses": [ip], "conditions": {"ready": r},
                           "targetRef": {"kind": "Pod", "namespace": ns,
                                         "name": p}}
                          for ip, p, r in endpoints]}


# The shared app: namespace shop.
#  web:  Service 80 -> targetPort "http" (8080), 2 ready pods
#  api:  Service 8000 -> 9090 (numbers differ); pods v1/v2 x track stable/canary
#        api-v2-canary is NOT ready
APP = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}},
    pod("web-1", {"app": "web"}, "10.0.1.1"),
    pod("web-2", {"app": "web"}, "10.0.1.2"),
    pod("api-v1-stable", {"app": "api", "version": "v1", "track": "stable"},
        "10.0.2.1", ports=[{"name": "grpc", "containerPort": 9090}]),
    pod("api-v2-stable", {"app": "api", "version": "v2", "track": "stable"},
        "10.0.2.2", ports=[{"name": "grpc", "containerPort": 9090}]),
    pod("api-v2-canary", {"app": "api", "version": "v2", "track": "canary"},
        "10.0.2.3", ready=False, ports=[{"name": "grpc", "containerPort": 9090}]),
    pod("api-v2-canary-ready", {"app": "api", "version": "v2", "track": "canary"},
        "10.0.2.4", ports=[{"name": "grpc", "containerPort": 9090}]),
    service("web", {"app": "web"},
            [{"name": "http", "port": 80, "targetPort": "http"}]),
    service("api", {"app": "api"},
            [{"name": "grpc-api", "port": 8000, "targetPort": 9090},
             {"name": "metrics", "port": 9100, "targetPort": 9100}]),
    slice_("web", [{"name": "http", "port": 8080}],
           [("10.0.1.1", "web-1", True), ("10.0.1.2", "web-2", True)]),
    slice_("api", [{"name": "grpc-api", "port": 9090},
                   {"name": "metrics", "port": 9100}],
           [("10.0.2.1", "api-v1-stable", True),
            ("10.0.2.2", "api-v2-stable", True),
            ("10.0.2.3", "api-v2-canary", False),
            ("10.0.2.4", "api-v2-canary-ready", True)]),
]


def gateway(servers, name="gw", ns="istio-system", selector=None):
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "Gateway",
            "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": selector if selector is not None
                     else {"istio": "ingressgateway"}, "servers": servers}}


def http(port=80, hosts=("*",), **extra):
    s = {"port": {"number": port, "name": "http-%d" % port, "protocol": "HTTP"},
         "hosts": list(hosts)}
    s.update(extra)
    return s


def https(hosts, cred="shop-cert", port=443, mode="SIMPLE"):
    return {"port": {"number": port, "name": "https-%d" % port,
                     "protocol": "HTTPS"},
            "hosts": list(hosts), "tls": {"mode": mode, "credentialName": cred}}


def vs(name, hosts, http_routes, gateways=("istio-system/gw",), ns="shop",
       created=None, **extra):
    md = {"name": name, "namespace": ns}
    if created:
        md["creationTimestamp"] = created
    spec = {"hosts": list(hosts), "gateways": list(gateways)}
    if http_routes is not None:
        spec["http"] = http_routes
    spec.update(extra)
    return {"apiVersion": "networking.istio.io/v1beta1",
            "kind": "VirtualService", "metadata": md, "spec": spec}


def dr(name, host, ns="shop", **spec):
    spec["host"] = host
    return {"apiVersion": "networking.istio.io/v1beta1",
            "kind": "DestinationRule",
            "metadata": {"name": name, "namespace": ns}, "spec": spec}


def tls_secret(name, ns="istio-system", generic=False):
    if generic:
        return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
                "metadata": {"name": name, "namespace": ns},
                "data": {"cert": TLS["tls.crt"], "key": TLS["tls.key"]}}
    return {"apiVersion": "v1", "kind": "Secret",
            "type": "kubernetes.io/tls",
            "metadata": {"name": name, "namespace": ns}, "data": dict(TLS)}


def dest(host, port=None, subset=None, weight=None):
    d = {"destination": {"host": host}}
    if port:
        d["destination"]["port"] = {"number": port}
    if subset:
        d["destination"]["subset"] = subset
    if weight is not None:
        d["weight"] = weight
    return d


CASE = {}

CASE["http-basic"] = [
    gateway([http(80, ["shop.example.com"])]),
    vs("shop", ["shop.example.com"], [
        {"match": [{"uri": {"prefix": "/api/"}}],
         "route": [dest("api", 8000)]},
        {"route": [dest("web")]}]),
]

CASE["weighted-split"] = [
    gateway([http(80, ["shop.example.com"])]),
    vs("shop", ["shop.example.com"], [
        {"route": [dest("api", 8000, "v1", 75), dest("api", 8000, "v2", 25)]}]),
    dr("api", "api", subsets=[{"name": "v1", "labels": {"version": "v1"}},
                              {"name": "v2", "labels": {"version": "v2"}}]),
]

CASE["matches-header-method-query"] = [
    gateway([http(80, ["shop.example.com"])]),
    vs("shop", ["shop.example.com"], [
        {"name": "beta-users",
         "match": [
             {"headers": {"x-beta": {"exact": "yes"},
                          "user-agent": {"prefix": "Mozilla"},
                          "x-trace": {}},
              "withoutHeaders": {"x-internal": {"exact": "1"}},
              "method": {"exact": "POST"},
              "uri": {"regex": "/api/v[0-9]+/orders"}},
             {"queryParams": {"beta": {"exact": "1"},
                              "lang": {"regex": "en|de"}},
              "uri": {"prefix": "/CART", "ignoreUriCase": True} if False else {"prefix": "/cart"},
              "ignoreUriCase": True}],
         "route": [dest("api", 8000)]},
        {"match": [{"headers": {"x-version": {"regex": "v[12]"}}},
                   {"uri": {"exact": "/"}, "scheme": {"exact": "http"}}],
         "route": [dest("web")]}]),
]

CASE["wildcard-hosts"] = [
    gateway([http(80, ["*.example.com"])]),
    vs("catch-all", ["*.example.com"], [{"route": [dest("web")]}],
       created="2024-01-01T00:00:00Z"),
    vs("api-host", ["api.example.com"], [
        {"match": [{"uri": {"prefix": "/v1"}}], "route": [dest("api", 8000)]}],
       created="2024-02-01T00:00:00Z"),
    vs("other-domain", ["shop.example.org"], [{"route": [dest("web")]}]),
]

CASE["https-sni"] = [
    gateway([http(80, ["shop.example.com"]),
             https(["shop.example.com"], "shop-cert"),
             https(["api.example.com"], "api-cert-generic", port=8443)]),
    tls_secret("shop-cert"),
    tls_secret("api-cert-generic", generic=True),
    vs("shop", ["shop.example.com"], [{"route": [dest("web")]}]),
    vs("api", ["api.example.com"], [{"route": [dest("api", 8000)]}]),
]

CASE["https-redirect"] = [
    gateway([http(80, ["shop.example.com"], tls={"httpsRedirect": True}),
             https(["shop.example.com"])]),
    tls_secret("shop-cert"),
    vs("shop", ["shop.example.com"], [{"route": [dest("web")]}]),
]

CASE["rewrite"] = [
    gateway([http(80, ["shop.example.com"])]),
    vs("shop", ["shop.example.com"], [
        {"match": [{"uri": {"prefix": "/legacy/api/"}}],
         "rewrite": {"uri": "/v2/", "authority": "api.internal"},
         "headers": {"request": {"set": {"x-rewritten": "true"},
                                 "add": {"x-via": "amc"},
                                 "remove": ["cookie"]},
                     "response": {"set": {"cache-control": "no-store"}}},
         "route": [dest("api", 8000)]},
        {"match": [{"uri": {"exact": "/home"}}],
         "rewrite": {"uri": "/index.html"}, "route": [dest("web")]},
        {"match": [{"uri": {"prefix": "/img"}}],
         "rewrite": {"uri": "/static/img"}, "route": [dest("web")]}]),
]

CASE["redirect"] = [
    gateway([http(80, ["shop.example.com"])]),
    vs("shop", ["shop.example.com"], [
        {"match": [{"uri": {"exact": "/old"}}],
         "redirect": {"uri": "/new", "authority": "www.example.com"}},
        {"match": [{"uri": {"prefix": "/secure"}}],
         "redirect": {"scheme": "https", "redirectCode": 308}},
        {"match": [{"uri": {"prefix": "/port"}}],
         "redirect": {"port": 8080, "redirectCode": 307}}]),
]

CASE["subsets-and-labels"] = [
    gateway([http(80, ["shop.example.com"])]),
    vs("shop", ["shop.example.com"], [
        {"route": [dest("api", 8000, "v2-canary", 10),
                   dest("api", 8000, "v2-stable", 90)]}]),
    dr("api", "api.shop.svc.cluster.local", subsets=[
        {"name": "v2-canary", "labels": {"version": "v2", "track": "canary"}},
        {"name": "v2-stable", "labels": {"version": "v2", "track": "stable"}}]),
]

CASE["service-target-ports"] = [
    gateway([http(80, ["shop.example.com"])]),
    # legacy: Endpoints only (no EndpointSlice); named port
    service("legacy", {"app": "legacy"},
            [{"name": "web", "port": 80, "targetPort": "web"}]),
    {"apiVersion": "v1", "kind": "Endpoints",
     "metadata": {"name": "legacy", "namespace": "shop"},
     "subsets": [{"addresses": [{"ip": "10.0.3.1"}],
                  "notReadyAddresses": [{"ip": "10.0.3.2"}],
                  "ports": [{"name": "web", "port": 3000}]}]},
    # bare: no endpoint objects at all: Pods and their named container port
    pod("bare-1", {"app": "bare"}, "10.0.4.1",
        ports=[{"name": "svc", "containerPort": 7070}]),
    pod("bare-2", {"app": "bare"}, "10.0.4.2", ready=False,
        ports=[{"name": "svc", "containerPort": 7070}]),
    service("bare", {"app": "bare"},
            [{"name": "tcp", "port": 7000, "targetPort": "svc"}]),
    vs("shop", ["shop.example.com"], [
        {"match": [{"uri": {"prefix": "/legacy"}}], "route": [dest("legacy")]},
        {"match": [{"uri": {"prefix": "/bare"}}], "route": [dest("bare", 7000)]},
        {"match": [{"uri": {"prefix": "/metrics"}}],
         "route": [dest("api", 9100)]},
        {"route": [dest("web", 80)]}]),
]

CASE["hosts-short-fqdn"] = [
    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "front"}},
    gateway([http(80, ["front.example.com"])]),
    vs("front", ["front.example.com"], [
        {"match": [{"uri": {"prefix": "/a"}}], "route": [dest("web.shop")]},
        {"match": [{"uri": {"prefix": "/b"}}],
         "route": [dest("web.shop.svc.cluster.local")]},
        {"match": [{"uri": {"prefix": "/c"}}], "route": [dest("web.shop.svc")]},
        {"match": [{"uri": {"prefix": "/d"}}], "route": [dest("web")]}],
       ns="front"),
]

CASE["serviceentry"] = [
    gateway([http(80, ["shop.example.com"])]),
    {"apiVersion": "networking.istio.io/v1beta1", "kind": "ServiceEntry",
     "metadata": {"name": "payments", "namespace": "shop"},
     "spec": {"hosts": ["payments.partner.example"],
              "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}],
              "resolution": "STATIC", "location": "MESH_EXTERNAL",
              "endpoints": [{"address": "192.0.2.10"},
                            {"address": "192.0.2.11",
                             "ports": {"https": 8443}}]}},
    {"apiVersion": "networking.istio.io/v1beta1", "kind": "ServiceEntry",
     "metadata": {"name": "search", "namespace": "shop"},
     "spec": {"hosts": ["search.partner.example"],
              "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
              "resolution": "DNS"}},
    dr("payments", "payments.partner.example",
       trafficPolicy={"tls": {"mode": "SIMPLE",
                              "sni": "payments.partner.example"}}),
    vs("shop", ["shop.example.com"], [
        {"match": [{"uri": {"prefix": "/pay"}}],
         "route": [dest("payments.partner.example")]},
        {"match": [{"uri": {"prefix": "/search"}}],
         "route": [dest("search.partner.example", 80)]}]),
]

CASE["multiple-virtualservices-order"] = [
    gateway([http(80, ["shop.example.com"])]),
    vs("zz-older", ["shop.example.com"], [
        {"match": [{"uri": {"prefix": "/api"}}], "route": [dest("api", 8000)]}],
       created="2023-06-01T00:00:00Z"),
    vs("aa-newer", ["shop.example.com"], [{"route": [dest("web")]}],
       created="2024-06-01T00:00:00Z"),
    vs("other-ns", ["shop.example.com"], [
        {"match": [{"uri": {"prefix": "/admin"}}], "route": [dest("web.shop")]}],
       ns="ops", created="2024-06-01T00:00:00Z"),
    vs("not-bound", ["shop.example.com"], [{"route": [dest("web")]}],
       gateways=["mesh"]),
]

CASE["unready-endpoints"] = [
    gateway([http(80, ["shop.example.com"])]),
    vs("shop", ["shop.example.com"], [{"route": [dest("api", 8000)]}]),
]

CASE["destinationrule-lb"] = [
    gateway([http(80, ["*"])]),
    vs("shop", ["*"], [
        {"match": [{"uri": {"prefix": "/a"}}], "route": [dest("api", 8000, "rr")]},
        {"match": [{"uri": {"prefix": "/b"}}], "route": [dest("api", 8000, "lr")]},
        {"match": [{"uri": {"prefix": "/c"}}], "route": [dest("api", 8000, "rnd")]},
        {"match": [{"uri": {"prefix": "/d"}}], "route": [dest("api", 8000, "hdr")]},
        {"match": [{"uri": {"prefix": "/e"}}], "route": [dest("api", 8000, "ip")]},
        {"match": [{"uri": {"prefix": "/f"}}], "route": [dest("api", 8000, "cookie")]},
        {"route": [dest("web")]}]),
    dr("api", "api", trafficPolicy={"loadBalancer": {"simple": "LEAST_REQUEST"},
                                    "tls": {"mode": "SIMPLE"}},
       subsets=[
           {"name": "rr", "labels": {"version": "v1"},
            "trafficPolicy": {"loadBalancer": {"simple": "ROUND_ROBIN"}}},
           {"name": "lr", "labels": {"version": "v1"}},
           {"name": "rnd", "labels": {"version": "v1"},
            "trafficPolicy": {"loadBalancer": {"simple": "RANDOM"}}},
           {"name": "hdr", "labels": {"version": "v2"},
            "trafficPolicy": {"loadBalancer": {"consistentHash":
                                               {"httpHeaderName": "x-user"}}}},
           {"name": "ip", "labels": {"version": "v2"},
            "trafficPolicy": {"loadBalancer": {"consistentHash":
                                               {"useSourceIp": True}}}},
           {"name": "cookie", "labels": {"version": "v2"},
            "trafficPolicy": {"loadBalancer": {"consistentHash":
                                               {"httpCookie": {"name": "s",
                                                               "ttl": "0s"}}}}}]),
    dr("web", "web.shop.svc.cluster.local",
       trafficPolicy={"outlierDetection": {"consecutive5xxErrors": 5},
                      "connectionPool": {"tcp": {"maxConnections": 100}}}),
]

CASE["direct-response"] = [
    gateway([http(80, ["shop.example.com"])]),
    vs("shop", ["shop.example.com"], [
        {"match": [{"uri": {"exact": "/healthz"}}],
         "directResponse": {"status": 200, "body": {"string": "ok"}}},
        {"match": [{"uri": {"prefix": "/gone"}}],
         "directResponse": {"status": 410}},
        {"route": [dest("web")]}]),
]

CASE["unsupported-features"] = [
    gateway([http(80, ["shop.example.com"]),
             {"port": {"number": 443, "name": "tls", "protocol": "HTTPS"},
              "hosts": ["pass.example.com"], "tls": {"mode": "PASSTHROUGH"}},
             {"port": {"number": 8443, "name": "mtls", "protocol": "HTTPS"},
              "hosts": ["m.example.com"],
              "tls": {"mode": "MUTUAL", "credentialName": "shop-cert"}}]),
    tls_secret("shop-cert"),
    vs("shop", ["shop.example.com"], [
        {"match": [{"uri": {"prefix": "/slow"}}],
         "route": [dest("web")], "timeout": "3s",
         "retries": {"attempts": 3, "perTryTimeout": "1s"},
         "fault": {"abort": {"httpStatus": 500, "percentage": {"value": 1}}},
         "mirror": {"host": "api", "port": {"number": 8000}},
         "corsPolicy": {"allowOrigins": [{"exact": "https://x.example"}]}},
        {"match": [{"uri": {"prefix": "/delegated"}}],
         "delegate": {"name": "child", "namespace": "shop"}},
        {"match": [{"headers": {"x-v": {"regex": "v[0-9]"}}},
                   {"uri": {"prefix": "/"}}],
         "route": [dest("web")]}]),
    vs("pass", ["pass.example.com"], None,
       tls=[{"match": [{"sniHosts": ["pass.example.com"], "port": 443}],
             "route": [dest("web")]}]),
]

CASE["selector-not-matching"] = [
    gateway([http(80, ["shop.example.com"])],
            selector={"istio": "egressgateway"}),
    vs("shop", ["shop.example.com"], [{"route": [dest("web")]}]),
]

CASE["missing-references"] = [
    gateway([http(80, ["shop.example.com"]),
             https(["secure.example.com"], "no-such-secret")]),
    vs("shop", ["shop.example.com"], [
        {"match": [{"uri": {"prefix": "/nowhere"}}],
         "route": [dest("nosuchservice")]},
        {"match": [{"uri": {"prefix": "/nosubset"}}],
         "route": [dest("api", 8000, "v9")]},
        {"match": [{"uri": {"prefix": "/noport"}}],
         "route": [dest("api")]},
        {"route": [dest("web")]}]),
]

CASE["tcp-server"] = [
    gateway([{"port": {"number": 5432, "name": "tcp-db", "protocol": "TCP"},
              "hosts": ["*"]}]),
    vs("db", ["*"], None, tcp=[{"match": [{"port": 5432}],
                                "route": [dest("api", 8000)]}]),
]


# Two Services whose ports read exactly like their EndpointSlices' (the
# decoder may then give all four the same `ports` table): each pool must
# still get its own Service's endpoints.
CASE["identical-ports"] = [
    service("blue", {"app": "blue"}, [{"name": "http", "port": 8080}]),
    slice_("blue", [{"name": "http", "port": 8080}],
           [("10.0.3.1", "blue-1", True)]),
    service("green", {"app": "green"}, [{"name": "http", "port": 8080}]),
    slice_("green", [{"name": "http", "port": 8080}],
           [("10.0.4.1", "green-1", True)]),
    gateway([http(80, ["shop.example.com"])]),
    vs("shop", ["shop.example.com"], [
        {"route": [dest("blue", 8080, weight=50),
                   dest("green", 8080, weight=50)]}]),
]

# Servers of several EndpointSlices per Service, in and out of address
# order (the rules keep the usual in-order case cheap, and sort otherwise):
# numeric IPv4 order across slices, the same address under two target
# ports, an endpoint with two addresses, IPv6 among IPv4 and an address
# listed twice.
def endpoints_(svc, port, addrs, suffix, port_name="http"):
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": svc + "-" + suffix, "namespace": "shop",
                         "labels": {"kubernetes.io/service-name": svc}},
            "addressType": "IPv4",
            "ports": [{"name": port_name, "port": port}],
            "endpoints": [{"addresses": a, "conditions": {"ready": True}}
                          for a in addrs]}


CASE["endpoint-order"] = [
    service("in-order", {"app": "in-order"}, [{"name": "http", "port": 80}]),
    endpoints_("in-order", 8080, [["10.0.5.1"], ["10.0.5.2", "10.0.5.9"]],
               "a"),
    endpoints_("in-order", 8080, [["10.0.5.10"], ["10.0.6.1"]], "b"),
    service("shuffled", {"app": "shuffled"}, [{"name": "http", "port": 80}]),
    endpoints_("shuffled", 8080, [["10.0.7.10"], ["10.0.7.9"]], "a"),
    endpoints_("shuffled", 80, [["10.0.7.9"], ["10.0.7.2"]], "b"),
    service("mixed", {"app": "mixed"}, [{"name": "http", "port": 80}]),
    endpoints_("mixed", 8080, [["fd00::2"], ["10.0.8.10"], ["10.0.8.2"]], "a"),
    endpoints_("mixed", 8080, [["10.0.8.3", "10.0.8.2"], ["fd00::1"]], "b"),
    gateway([http(80, ["shop.example.com"])]),
    vs("shop", ["shop.example.com"], [
        {"match": [{"uri": {"prefix": "/a"}}], "route": [dest("in-order", 80)]},
        {"match": [{"uri": {"prefix": "/b"}}], "route": [dest("shuffled", 80)]},
        {"route": [dest("mixed", 80)]}]),
]

def main():
    for name, docs in sorted(CASE.items()):
        d = os.path.join(CASES, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "input.yaml"), "w") as f:
            f.write("# Golden case %s (generated by tests/golden/"
                    "make-cases.py).\n" % name)
            yaml.safe_dump_all(APP + docs, f, sort_keys=False,
                               default_flow_style=None, width=100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
