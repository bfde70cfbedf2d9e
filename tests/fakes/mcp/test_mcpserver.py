"""Tests of the fake MCP server itself, with grpcio's own client (C-core):
both protocols answer subscriptions with the fixtures, record ACKs/NACKs and
nodes, push updates and refuse streams as told. This is what makes the
integration tests' expectations trustworthy."""
import os
import queue
import sys
import threading

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import mcpserver  # noqa: E402
from harness import McpServer, run, wait_until  # noqa: E402

PB = mcpserver.compile_protos()


class Client:
    """A bidi stream with a request queue; responses collected in order."""

    def __init__(self, port, path, resp_cls, metadata=None):
        self.ch = grpc.insecure_channel("127.0.0.1:%d" % port)
        self.q = queue.Queue()
        self.responses = []
        self.error = None
        call = self.ch.stream_stream(path, request_serializer=None,
                                     response_deserializer=resp_cls.FromString)
        self.it = call(iter(self.q.get, None), metadata=metadata)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        try:
            for r in self.it:
                self.responses.append(r)
        except grpc.RpcError as e:
            self.error = e

    def send(self, msg):
        self.q.put(msg.SerializeToString())

    def close(self):
        self.q.put(None)
        self.it.cancel()
        self.ch.close()


def legacy_client(srv, cleanup):
    c = Client(srv.port, mcpserver.LEGACY_PATH, PB["mcp"].Resources)
    cleanup.append(c)
    return c


def test_legacy_subscribe_ack_nack(tmp, cleanup):
    srv = McpServer(tmp)
    cleanup.append(srv)
    c = legacy_client(srv, cleanup)
    req = PB["mcp"].RequestResources(
        collection="istio/networking/v1alpha3/gateways")
    req.sink_node.id = "t"
    c.send(req)
    wait_until(lambda: c.responses, 10, "first Resources")
    r = c.responses[0]
    assert r.collection == "istio/networking/v1alpha3/gateways"
    assert r.nonce == "1" and not r.incremental
    assert [x.metadata.name for x in r.resources] == \
        ["bookinfo/bookinfo-gateway"]
    assert r.resources[0].body.type_url == \
        "type.googleapis.com/istio.networking.v1alpha3.Gateway"
    gw = PB["gateway_pb2"].Gateway.FromString(r.resources[0].body.value)
    assert gw.servers[1].tls.credential_name == "bookinfo-cert"
    assert r.resources[0].metadata.labels["app"] == "bookinfo"
    ack = PB["mcp"].RequestResources(collection=req.collection,
                                     response_nonce="1")
    c.send(ack)
    wait_until(lambda: srv.state()["acks"], 10, "ACK recorded")
    srv.control("/bad", {"kind": "Gateway", "namespace": "bookinfo",
                         "name": "x", "how": "garbage"})
    wait_until(lambda: len(c.responses) == 2, 10, "push")
    assert c.responses[1].nonce == "2"
    assert len(c.responses[1].resources) == 2
    nack = PB["mcp"].RequestResources(collection=req.collection,
                                      response_nonce="2")
    nack.error_detail.code = 3
    nack.error_detail.message = "bad x"
    c.send(nack)
    n = wait_until(lambda: srv.state()["nacks"], 10, "NACK recorded")
    assert n[0]["code"] == 3 and n[0]["message"] == "bad x" and \
        n[0]["nonce"] == "2"


def test_legacy_unknown_collection_kills_stream(tmp, cleanup):
    srv = McpServer(tmp)
    cleanup.append(srv)
    c = legacy_client(srv, cleanup)
    c.send(PB["mcp"].RequestResources(collection="k8s/core/v1/pods"))
    wait_until(lambda: c.error, 10, "stream error")
    assert c.error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "unsupported collection" in c.error.details()


def test_xds_node_required_and_versions(tmp, cleanup):
    srv = McpServer(tmp, "--xds-version", "v1")
    cleanup.append(srv)
    c = Client(srv.port, mcpserver.XDS_PATH,
               PB["discovery"].DiscoveryResponse)
    cleanup.append(c)
    c.send(PB["discovery"].DiscoveryRequest(
        type_url="networking.istio.io/v1/Gateway"))
    wait_until(lambda: c.error, 10, "missing node error")
    assert c.error.code() == grpc.StatusCode.INVALID_ARGUMENT
    c2 = Client(srv.port, mcpserver.XDS_PATH,
                PB["discovery"].DiscoveryResponse)
    cleanup.append(c2)
    req = PB["discovery"].DiscoveryRequest(
        type_url="networking.istio.io/v1/VirtualService")
    req.node.id = "router~1.2.3.4~x.y~y.svc.cluster.local"
    c2.send(req)
    c2.send(PB["discovery"].DiscoveryRequest(
        type_url="networking.istio.io/v1alpha3/VirtualService"))
    wait_until(lambda: len(c2.responses) == 2, 10, "two responses")
    by_url = {r.type_url: r for r in c2.responses}
    v1 = by_url["networking.istio.io/v1/VirtualService"]
    assert len(v1.resources) == 1 and not \
        by_url["networking.istio.io/v1alpha3/VirtualService"].resources
    assert v1.resources[0].type_url == \
        "type.googleapis.com/istio.mcp.v1alpha1.Resource"
    res = PB["resource"].Resource.FromString(v1.resources[0].value)
    assert res.metadata.name == "bookinfo/bookinfo"
    vs = PB["virtual_service_pb2"].VirtualService.FromString(res.body.value)
    assert vs.http[0].timeout.seconds == 1 and \
        vs.http[0].timeout.nanos == 500000000
    assert srv.state()["nodes"][0]["id"].startswith("router~")


def test_trailers_only_and_token(tmp, cleanup):
    srv = McpServer(tmp, "--token", "s3cret")
    cleanup.append(srv)
    c = Client(srv.port, mcpserver.XDS_PATH,
               PB["discovery"].DiscoveryResponse,
               metadata=[("authorization", "Bearer wrong")])
    cleanup.append(c)
    wait_until(lambda: c.error, 10, "refusal")
    assert c.error.code() == grpc.StatusCode.UNAUTHENTICATED
    srv.control("/trailers_only", {"code": "PERMISSION_DENIED",
                                   "message": "not you", "count": 1})
    c2 = Client(srv.port, mcpserver.XDS_PATH,
                PB["discovery"].DiscoveryResponse,
                metadata=[("authorization", "Bearer s3cret")])
    cleanup.append(c2)
    wait_until(lambda: c2.error, 10, "trailers-only")
    assert c2.error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert c2.error.details() == "not you"
    assert srv.state()["auth_failures"] == 1


if __name__ == "__main__":
    run([test_legacy_subscribe_ack_nack,
         test_legacy_unknown_collection_kills_stream,
         test_xds_node_required_and_versions, test_trailers_only_and_token])
