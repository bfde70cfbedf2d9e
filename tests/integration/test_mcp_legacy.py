"""amc mcp-dump against the fake Galley (legacy MCP,
/istio.mcp.v1alpha1.ResourceSource/EstablishResourceStream): initial sync,
updates, deletes, incremental pushes, NACKs, and stream faults."""
import os
import sys

sys.path.insert(0, os.path.join(os.environ.get(
    "AMC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..")),
    "tests", "fakes", "mcp"))

from harness import run, state_of  # noqa: E402
from scenarios import scenarios  # noqa: E402



def test_incremental_push(tmp, cleanup):
    from harness import Dump, McpServer
    srv = McpServer(tmp)
    cleanup.append(srv)
    d = Dump(tmp, "http://127.0.0.1:%d" % srv.port)
    cleanup.append(d)
    d.wait_synced_all()
    m = d.mark()
    new = {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
           "metadata": {"name": "extra", "namespace": "shop"},
           "spec": {"servers": [{"port": {"number": 8080, "name": "h",
                                          "protocol": "HTTP"},
                                 "hosts": ["shop.example.com"]}]}}
    srv.control("/incremental", {"kind": "Gateway", "upsert": [new],
                                 "remove": ["bookinfo/bookinfo-gateway"]})
    d.wait_event(lambda e: e["event"] == "delete", m, what="delete")
    ev = [e for e in d.since(m) if e["event"] in ("upsert", "delete")]
    assert [(e["event"], e["namespace"], e["name"]) for e in ev] == [
        ("upsert", "shop", "extra"),
        ("delete", "bookinfo", "bookinfo-gateway")], ev
    assert ev[0]["object"]["spec"]["servers"][0]["hosts"] == \
        ["shop.example.com"]
    assert not [e for e in d.since(m) if e["event"] == "replace"]


def test_sink_requests(tmp, cleanup):
    from harness import Dump, McpServer
    srv = McpServer(tmp)
    cleanup.append(srv)
    d = Dump(tmp, "mcp://127.0.0.1:%d" % srv.port, "--node-id", "amc-test")
    cleanup.append(d)
    d.wait_synced_all()
    reqs = srv.state()["requests"]
    first = [r for r in reqs if not r["nonce"]]
    assert sorted(r["collection"] for r in first) == sorted([
        "istio/networking/v1alpha3/gateways",
        "istio/networking/v1alpha3/virtualservices",
        "istio/networking/v1alpha3/destinationrules",
        "istio/networking/v1alpha3/serviceentries"]), first
    assert all(r["sink_node"] == "amc-test" for r in reqs), reqs


def test_simple_lb_zero_is_round_robin(tmp, cleanup):
    """Galley predates istio/api 1.14: SimpleLB 0 means ROUND_ROBIN."""
    from harness import Dump, McpServer
    srv = McpServer(tmp)
    cleanup.append(srv)
    d = Dump(tmp, "http://127.0.0.1:%d" % srv.port)
    cleanup.append(d)
    d.wait_synced_all()
    m = d.mark()
    dr = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
          "metadata": {"name": "rr", "namespace": "bookinfo"},
          "spec": {"host": "rr", "trafficPolicy": {
              "loadBalancer": {"simple": "UNSPECIFIED"}}}}
    srv.control("/apply", {"objects": [dr]})
    e = d.wait_event(lambda e: e["event"] == "upsert" and e["name"] == "rr",
                     m, what="rr")
    assert e["object"]["spec"]["trafficPolicy"]["loadBalancer"] == \
        {"simple": "ROUND_ROBIN"}, e
    assert len(state_of(d.snapshot())) == 5


if __name__ == "__main__":
    run(scenarios("legacy") + [test_incremental_push, test_sink_requests,
                               test_simple_lb_zero_is_round_robin])
