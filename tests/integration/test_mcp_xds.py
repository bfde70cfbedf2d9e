"""amc mcp-dump --xds against the fake istiod (MCP over xDS,
StreamAggregatedResources): node identity, both type URL versions, ACK/NACK
with version and nonce, faults, and TLS with a CA and a bearer token (the
port 15012 setup)."""
import os
import subprocess
import sys

sys.path.insert(0, os.path.join(os.environ.get(
    "AMC_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", "..")),
    "tests", "fakes", "mcp"))

from harness import Dump, McpServer, run, state_of, wait_until  # noqa: E402
from scenarios import scenarios  # noqa: E402

KINDS = ["Gateway", "VirtualService", "DestinationRule", "ServiceEntry"]
TOKEN = "tok-3f9a1c-secret-value"


def start(tmp, cleanup, *server_args, dump_args=(), url=None):
    srv = McpServer(tmp, *server_args)
    cleanup.append(srv)
    d = Dump(tmp, url or "http://127.0.0.1:%d" % srv.port, "--xds",
             *dump_args)
    cleanup.append(d)
    return srv, d


def test_node_and_subscriptions(tmp, cleanup):
    srv = McpServer(tmp)
    cleanup.append(srv)
    # xds:// picks MCP over xDS without --xds
    d = Dump(tmp, "xds://127.0.0.1:%d" % srv.port, "--namespace",
             "istio-system")
    cleanup.append(d)
    d.wait_synced_all()
    st = srv.state()
    assert len(st["nodes"]) == 1, st["nodes"]  # node only on the first request
    node = st["nodes"][0]
    parts = node["id"].split("~")
    assert len(parts) == 4 and parts[0] == "router", node
    assert parts[3] == "istio-system.svc.cluster.local", node
    assert node["metadata"] == {"GENERATOR": "api",
                                "NAMESPACE": "istio-system"}, node
    subs = sorted(r["type_url"] for r in st["requests"] if not r["nonce"])
    assert subs == sorted("networking.istio.io/%s/%s" % (v, k)
                          for k in KINDS for v in ("v1", "v1alpha3")), subs
    # ACK = version_info + nonce of the response
    acks = wait_until(lambda: len(srv.state()["acks"]) >= 8 and
                      srv.state()["acks"], 10, "8 ACKs")
    assert all(a["version"] == str(st["version"]) and a["nonce"]
               for a in acks), acks


def test_old_istiod_v1alpha3_only(tmp, cleanup):
    """A 1.7-1.23 istiod lists v1alpha3 and answers v1 with an empty set;
    the union keeps every object, whatever order the answers come in."""
    srv, d = start(tmp, cleanup, "--xds-version", "v1alpha3")
    d.wait_synced_all()
    assert len(state_of(d.snapshot())) == 4
    m = d.mark()
    srv.control("/reset")
    d.wait_synced_all(m)
    assert not [e for e in d.since(m) if e["event"] == "delete"]


def test_nack_keeps_last_version(tmp, cleanup):
    srv, d = start(tmp, cleanup)
    d.wait_synced_all()
    v_before = srv.state()["version"]
    srv.control("/bad", {"kind": "Gateway", "namespace": "bookinfo",
                         "name": "broken", "how": "garbage"})
    nacks = wait_until(lambda: srv.state()["nacks"], 10, "NACK")
    assert nacks[0]["type_url"] == "networking.istio.io/v1/Gateway", nacks
    assert nacks[0]["version"] == str(v_before), (nacks, v_before)


def simple_lb_case(identifier, expect):
    def test(tmp, cleanup):
        args = ["--identifier", identifier] if identifier else []
        srv, d = start(tmp, cleanup, *args)
        d.wait_synced_all()
        m = d.mark()
        dr = {"apiVersion": "networking.istio.io/v1",
              "kind": "DestinationRule",
              "metadata": {"name": "rr", "namespace": "bookinfo"},
              "spec": {"host": "rr", "trafficPolicy": {
                  "loadBalancer": {"simple": "UNSPECIFIED"}}}}
        srv.control("/apply", {"objects": [dr]})
        e = d.wait_event(lambda e: e["event"] == "upsert" and
                         e["name"] == "rr", m, what="rr")
        assert e["object"]["spec"]["trafficPolicy"]["loadBalancer"] == \
            {"simple": expect}, e
    test.__name__ = "test_simple_lb_zero_" + expect.lower()
    return test


def test_keepalive_outside_server_policy_gets_goaway(tmp, cleanup):
    """PINGs every 200 ms break gRPC C-core's (and istiod's) keepalive
    policy: the server answers GOAWAY ENHANCE_YOUR_CALM "too_many_pings",
    which amc reports and survives (the default 30 s stays within it)."""
    srv, d = start(tmp, cleanup, dump_args=["--keepalive-ms", "200"])
    d.wait_synced_all()
    e = d.wait_event(lambda e: e["event"] == "disconnected", timeout=20,
                     what="GOAWAY")
    assert e["detail"] == ("UNAVAILABLE: server sent GOAWAY "
                           "(ENHANCE_YOUR_CALM: too_many_pings)"), e
    m = d.mark()
    d.wait_synced_all(m)
    assert not [x for x in d.snapshot() if x["event"] == "delete"]


def make_pki(tmp):
    def sh(*a):
        subprocess.run(a, check=True, cwd=tmp, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
          "-nodes"]
    for ca in ("ca", "other-ca"):
        sh("openssl", "req", "-x509", *ec, "-keyout", ca + ".key", "-out",
           ca + ".crt", "-subj", "/CN=" + ca, "-days", "2")
    sh("openssl", "req", *ec, "-keyout", "srv.key", "-out", "srv.csr",
       "-subj", "/CN=istiod")
    with open(os.path.join(tmp, "ext.cnf"), "w") as f:
        f.write("subjectAltName=DNS:istiod.istio-system.svc,IP:127.0.0.1\n")
    sh("openssl", "x509", "-req", "-in", "srv.csr", "-CA", "ca.crt",
       "-CAkey", "ca.key", "-CAcreateserial", "-out", "srv.crt", "-days", "2",
       "-extfile", "ext.cnf")
    with open(os.path.join(tmp, "token"), "w") as f:
        f.write(TOKEN + "\n")
    with open(os.path.join(tmp, "bad-token"), "w") as f:
        f.write("not-the-token\n")
    return ["--tls-cert", os.path.join(tmp, "srv.crt"), "--tls-key",
            os.path.join(tmp, "srv.key"), "--token", TOKEN]


def test_tls_with_ca_and_token(tmp, cleanup):
    srv_args = make_pki(tmp)
    srv = McpServer(tmp, *srv_args)
    cleanup.append(srv)
    d = Dump(tmp, "https://127.0.0.1:%d" % srv.port, "--xds", "--ca-file",
             os.path.join(tmp, "ca.crt"), "--server-name",
             "istiod.istio-system.svc", "--token-file",
             os.path.join(tmp, "token"))
    cleanup.append(d)
    d.wait_synced_all()
    assert len(state_of(d.snapshot())) == 4
    assert srv.state()["auth_failures"] == 0
    # by IP address too (SAN IP:127.0.0.1)
    d2 = Dump(tmp, "https://127.0.0.1:%d" % srv.port, "--xds", "--ca-file",
              os.path.join(tmp, "ca.crt"), "--token-file",
              os.path.join(tmp, "token"), "--once", "--timeout-ms", "10000")
    cleanup.append(d2)
    wait_until(lambda: d2.proc.poll() is not None, 15, "--once exit")
    assert d2.proc.returncode == 0
    text = d.stderr_text() + d2.stderr_text()
    assert TOKEN not in text and not any(
        TOKEN in str(e) for e in d.snapshot() + d2.snapshot())


def test_tls_bad_token_is_unauthenticated(tmp, cleanup):
    srv_args = make_pki(tmp)
    srv = McpServer(tmp, *srv_args)
    cleanup.append(srv)
    d = Dump(tmp, "https://127.0.0.1:%d" % srv.port, "--xds", "--ca-file",
             os.path.join(tmp, "ca.crt"), "--server-name",
             "istiod.istio-system.svc", "--token-file",
             os.path.join(tmp, "bad-token"))
    cleanup.append(d)
    e = d.wait_event(lambda e: e["event"] == "disconnected", what="refusal")
    assert e["detail"] == ("UNAUTHENTICATED: the api generator requires an "
                           "authenticated control-plane identity"), e
    assert not state_of(d.snapshot())


def test_tls_wrong_ca_fails_verification(tmp, cleanup):
    srv_args = make_pki(tmp)
    srv = McpServer(tmp, *srv_args)
    cleanup.append(srv)
    d = Dump(tmp, "https://127.0.0.1:%d" % srv.port, "--xds", "--ca-file",
             os.path.join(tmp, "other-ca.crt"), "--server-name",
             "istiod.istio-system.svc", "--token-file",
             os.path.join(tmp, "token"))
    cleanup.append(d)
    e = d.wait_event(lambda e: e["event"] == "disconnected", what="failure")
    assert "certificate verify failed" in e["detail"], e
    assert srv.state()["streams_started"] == 0
    # wrong name
    d2 = Dump(tmp, "https://127.0.0.1:%d" % srv.port, "--xds", "--ca-file",
              os.path.join(tmp, "ca.crt"), "--server-name", "evil.example",
              "--token-file", os.path.join(tmp, "token"))
    cleanup.append(d2)
    e = d2.wait_event(lambda e: e["event"] == "disconnected", what="failure")
    assert "certificate verify failed" in e["detail"], e


def test_delta_removed_resources(tmp, cleanup):
    """Delta: a deletion arrives as removed_resources; the client applies it
    and ACKs with the nonce."""
    srv, d = start(tmp, cleanup, dump_args=["--delta"])
    d.wait_synced_all()
    st = srv.state()
    assert all(r.get("delta") for r in st["requests"]), st["requests"][:2]
    m = d.mark()
    srv.control("/delete", {"kind": "DestinationRule",
                            "namespace": "bookinfo", "name": "reviews"})
    d.wait_event(lambda e: e["event"] == "delete", m, what="delete")
    ev = [e for e in d.since(m) if e["event"] in ("upsert", "delete")]
    assert [(e["event"], e["name"]) for e in ev] == \
        [("delete", "reviews")], ev
    wait_until(lambda: any(a["type_url"].endswith("/DestinationRule") and
                           a["nonce"] for a in srv.state()["acks"]), 10,
               "ACK")


DELTA_SUBSET = ("initial_sync", "push_update", "delta_delete", "nack_garbage",
                "fault_reset", "fault_restart")

if __name__ == "__main__":
    run(scenarios("xds") +
        [t for t in scenarios("delta")
         if any(k in t.__name__ for k in DELTA_SUBSET)] + [
        test_delta_removed_resources,
        test_node_and_subscriptions, test_old_istiod_v1alpha3_only,
        test_nack_keeps_last_version,
        test_keepalive_outside_server_policy_gets_goaway,
        simple_lb_case('{"Component":"istiod","Info":{"version":"1.13.2"}}',
                       "ROUND_ROBIN"),
        simple_lb_case('{"Component":"istiod","Info":{"version":"1.22.0"}}',
                       "UNSPECIFIED"),
        simple_lb_case(None, "UNSPECIFIED"),
        test_tls_with_ca_and_token, test_tls_bad_token_is_unauthenticated,
        test_tls_wrong_ca_fails_verification])
