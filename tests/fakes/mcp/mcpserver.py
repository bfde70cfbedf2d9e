#!/usr/bin/python3
"""Fake Istio config server for amc's tests: legacy MCP (Galley) and
MCP-over-xDS (istiod ADS, state of the world and Delta) on one gRPC port, built on Debian's python3-grpcio
(gRPC C-core, whose stream-closing behaviour matches grpc-go/istiod).

Messages are built with python3-protobuf from the project's own proto/ files
(compiled with protoc --python_out into a temporary directory at start), and
Istio specs are converted from the fixture YAML with protobuf's own JSON
mapping (json_format.ParseDict) - an implementation independent of amc's
protobuf -> Lua conversion.

Usage:
  mcpserver.py --fixtures DIR_OR_FILE --port-file PATH
               [--tls-cert F --tls-key F] [--token T] [--xds-version v1]
               [--identifier JSON]

The port file gets {"port": <grpc port>, "control_port": <http port>}.
Control (HTTP on 127.0.0.1:control_port, JSON bodies, JSON answers):
  POST /apply    {"objects": [k8s objects]}         upsert + push
  POST /delete   {"kind", "namespace", "name"}      delete + push
  POST /bad      {"kind", "namespace", "name", "how": "garbage"|"badname"|
                  "wrongtype"|"duplicate"}          add a malformed resource
  POST /reset    {}        cancel every open stream (RST_STREAM CANCEL)
  POST /abort    {"code", "message"}  end every open stream with a status
  POST /trailers_only {"code", "message", "count"}  the next `count` streams
                 are refused at once (Trailers-Only response)
  POST /goaway   {}        GOAWAY: the old server drains, a new one listens
  POST /stop     {}        stop listening, drop connections
  POST /start    {}        listen again on the same port
  POST /slow     {"delay_ms"}  delay every response by that much
  POST /incremental {"kind", "upsert": [objects], "remove": ["ns/name"]}
                 legacy only: send one incremental Resources
  GET  /state    what clients sent: acks, nacks, nodes, streams, requests
"""
import argparse
import http.server
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import grpc
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.environ.get("AMC_SOURCE_DIR",
                        os.path.abspath(os.path.join(HERE, "..", "..", "..")))

KINDS = {
    # kind: (message module, message name, legacy collection)
    "Gateway": ("gateway_pb2", "Gateway",
                "istio/networking/v1alpha3/gateways"),
    "VirtualService": ("virtual_service_pb2", "VirtualService",
                       "istio/networking/v1alpha3/virtualservices"),
    "DestinationRule": ("destination_rule_pb2", "DestinationRule",
                        "istio/networking/v1alpha3/destinationrules"),
    "ServiceEntry": ("service_entry_pb2", "ServiceEntry",
                     "istio/networking/v1alpha3/serviceentries"),
}
LEGACY_PATH = "/istio.mcp.v1alpha1.ResourceSource/EstablishResourceStream"
XDS_PATH = ("/envoy.service.discovery.v3.AggregatedDiscoveryService/"
            "StreamAggregatedResources")
DELTA_PATH = ("/envoy.service.discovery.v3.AggregatedDiscoveryService/"
              "DeltaAggregatedResources")


def compile_protos():
    """protoc --python_out for proto/**.proto; returns the module namespace."""
    out = tempfile.mkdtemp(prefix="amc-mcp-pb-")
    proto_dir = os.path.join(SOURCE, "proto")
    files = []
    for root, _, names in os.walk(proto_dir):
        for n in names:
            if n.endswith(".proto"):
                files.append(os.path.relpath(os.path.join(root, n), proto_dir))
    # google/rpc would shadow the system 'google' package: move it aside
    subprocess.run(["protoc", "--python_out=" + out, "-I", proto_dir,
                    "-I", "/usr/include"] + sorted(files), check=True)
    sys.path.insert(0, out)
    import importlib
    mods = {}
    for kind, (mod, _, _) in KINDS.items():
        mods[mod] = importlib.import_module("networking.v1alpha3." + mod)
    mods["mcp"] = importlib.import_module("mcp.v1alpha1.mcp_pb2")
    mods["resource"] = importlib.import_module("mcp.v1alpha1.resource_pb2")
    mods["discovery"] = importlib.import_module(
        "envoy.service.discovery.v3.discovery_pb2")
    # Everything is imported: the generated files are no longer needed (a
    # server killed with SIGKILL would leave them behind otherwise).
    sys.path.remove(out)
    shutil.rmtree(out, ignore_errors=True)
    return mods


PB = None


def load_objects(path):
    files = []
    if os.path.isdir(path):
        for n in sorted(os.listdir(path)):
            if n.endswith((".yaml", ".yml", ".json")):
                files.append(os.path.join(path, n))
    elif path:
        files.append(path)
    objs = []
    for f in files:
        with open(f) as fh:
            for doc in yaml.safe_load_all(fh):
                if doc and doc.get("kind") in KINDS:
                    objs.append(doc)
    return objs


class Entry:
    def __init__(self, obj=None, bad=None):
        self.obj = obj
        self.bad = bad  # None or how the resource is malformed


class Stream:
    def __init__(self, proto, peer):
        self.proto = proto
        self.peer = peer
        self.out = queue.Queue()
        self.subs = {}  # collection/type url -> True
        self.sent = {}  # delta: type url -> names sent last
        self.nonce = 0
        self.context = None


class Server:
    def __init__(self, args):
        self.args = args
        self.lock = threading.RLock()
        self.store = {k: {} for k in KINDS}  # kind -> "ns/name" -> Entry
        self.version = 1
        self.rv = 1000
        for o in load_objects(args.fixtures):
            self._put(o)
        self.streams = []
        self.log = {"acks": [], "nacks": [], "nodes": [], "requests": [],
                    "streams_started": 0, "auth_failures": 0}
        self.trailers_only = []  # list of (code, message)
        self.delay = 0.0
        self.grpc_server = None
        self.port = 0

    # ---- state ----
    def _put(self, o):
        md = o.setdefault("metadata", {})
        md.setdefault("namespace", "default")
        self.rv += 1
        md.setdefault("resourceVersion", str(self.rv))
        key = md["namespace"] + "/" + md["name"]
        self.store[o["kind"]][key] = Entry(obj=o)

    def resource(self, kind, key, entry):
        mod, msg, _ = KINDS[kind]
        if entry.bad == "duplicate":  # a second copy of another object
            other = sorted(k for k, e in self.store[kind].items() if e.obj)[0]
            return self.resource(kind, other, self.store[kind][other])
        r = PB["resource"].Resource()
        if entry.bad == "badname":
            r.metadata.name = "Not_A/Valid_Name!"
        else:
            r.metadata.name = key
        if entry.bad:
            r.body.type_url = "type.googleapis.com/istio.networking.v1alpha3." + msg
            if entry.bad == "garbage":
                r.body.value = b"\x0a\xff\xff\xff\xff"
            elif entry.bad == "wrongtype":
                other = "DestinationRule" if kind != "DestinationRule" else "Gateway"
                r.body.type_url = ("type.googleapis.com/istio.networking.v1alpha3."
                                   + KINDS[other][1])
            return r
        o = entry.obj
        md = o.get("metadata", {})
        from google.protobuf import json_format
        spec = json_format.ParseDict(o.get("spec", {}),
                                     getattr(PB[mod], msg)())
        r.body.Pack(spec)
        if md.get("resourceVersion"):
            r.metadata.version = str(md["resourceVersion"])
        for k, v in (md.get("labels") or {}).items():
            r.metadata.labels[k] = v
        for k, v in (md.get("annotations") or {}).items():
            r.metadata.annotations[k] = v
        if md.get("creationTimestamp"):
            r.metadata.create_time.FromJsonString(md["creationTimestamp"])
        return r

    def kind_resources(self, kind):
        return [r for _, r in self.kind_items(kind)]

    def kind_items(self, kind):
        with self.lock:
            items = sorted(self.store[kind].items())
            return [(k, self.resource(kind, k, e)) for k, e in items]

    # ---- messages ----
    def legacy_response(self, st, collection, incremental=None):
        kind = next((k for k, v in KINDS.items() if v[2] == collection), None)
        m = PB["mcp"].Resources()
        m.collection = collection
        m.system_version_info = str(self.version)
        st.nonce += 1
        m.nonce = str(st.nonce)
        if incremental:
            m.incremental = True
            for o in incremental.get("upsert", []):
                md = o["metadata"]
                key = md.get("namespace", "default") + "/" + md["name"]
                m.resources.append(self.resource(kind, key, Entry(obj=o)))
            m.removed_resources.extend(incremental.get("remove", []))
        else:
            m.resources.extend(self.kind_resources(kind))
        return m.SerializeToString()

    def xds_response(self, st, type_url):
        parts = type_url.split("/")
        m = PB["discovery"].DiscoveryResponse()
        m.type_url = type_url
        m.version_info = str(self.version)
        st.nonce += 1
        m.nonce = str(st.nonce)
        if self.args.identifier:
            m.control_plane.identifier = self.args.identifier
        if (len(parts) == 3 and parts[0] == "networking.istio.io"
                and parts[1] == self.args.xds_version and parts[2] in KINDS):
            for r in self.kind_resources(parts[2]):
                a = m.resources.add()
                a.Pack(r)
        return m.SerializeToString()

    def delta_response(self, st, type_url):
        """All current resources (as istiod does) plus the names removed
        since the last response on this stream."""
        parts = type_url.split("/")
        m = PB["discovery"].DeltaDiscoveryResponse()
        m.type_url = type_url
        m.system_version_info = str(self.version)
        st.nonce += 1
        m.nonce = str(st.nonce)
        if self.args.identifier:
            m.control_plane.identifier = self.args.identifier
        current = set()
        if (len(parts) == 3 and parts[0] == "networking.istio.io"
                and parts[1] == self.args.xds_version and parts[2] in KINDS):
            for key, r in self.kind_items(parts[2]):
                res = m.resources.add()
                res.name = key
                res.resource.Pack(r)
                current.add(key)
        m.removed_resources.extend(sorted(st.sent.get(type_url, set()) -
                                          current))
        st.sent[type_url] = current
        return m.SerializeToString()

    def push_kind(self, kind, incremental=None):
        with self.lock:
            for st in list(self.streams):
                if st.proto == "legacy" and KINDS[kind][2] in st.subs:
                    st.out.put(self.legacy_response(st, KINDS[kind][2],
                                                    incremental))
                elif st.proto in ("xds", "delta") and not incremental:
                    for url in st.subs:
                        if url.endswith("/" + kind):
                            st.out.put(self.xds_response(st, url)
                                       if st.proto == "xds" else
                                       self.delta_response(st, url))

    # ---- handlers ----
    def check_auth(self, context):
        if not self.args.token:
            return True
        md = dict(context.invocation_metadata())
        if md.get("authorization") != "Bearer " + self.args.token:
            with self.lock:
                self.log["auth_failures"] += 1
            context.abort(grpc.StatusCode.UNAUTHENTICATED,
                          "the api generator requires an authenticated "
                          "control-plane identity")
        return True

    def handle(self, proto, request_iterator, context):
        self.check_auth(context)
        with self.lock:
            self.log["streams_started"] += 1
            if self.trailers_only:
                code, msg = self.trailers_only.pop(0)
                context.abort(getattr(grpc.StatusCode, code), msg)
            st = Stream(proto, context.peer())
            st.context = context
            self.streams.append(st)
        reader = threading.Thread(target=self.read_loop,
                                  args=(st, request_iterator), daemon=True)
        reader.start()
        try:
            while context.is_active():
                try:
                    item = st.out.get(timeout=0.2)
                except queue.Empty:
                    continue
                if item is None:
                    break
                if isinstance(item, tuple):  # ("abort", code, message)
                    context.abort(getattr(grpc.StatusCode, item[1]), item[2])
                if self.delay:
                    time.sleep(self.delay)
                yield item
        finally:
            with self.lock:
                if st in self.streams:
                    self.streams.remove(st)

    def read_loop(self, st, it):
        try:
            for raw in it:
                if st.proto == "legacy":
                    self.on_legacy_request(st, raw)
                else:
                    self.on_xds_request(st, raw)
        except grpc.RpcError:  # stream ended (cancelled, reset, closed)
            pass
        except Exception as e:  # a bug or a bad fixture: say so
            sys.stderr.write("mcpserver: %r\n" % (e,))
        st.out.put(None)

    def on_legacy_request(self, st, raw):
        req = PB["mcp"].RequestResources.FromString(raw)
        rec = {"collection": req.collection, "nonce": req.response_nonce,
               "sink_node": req.sink_node.id, "incremental": req.incremental}
        with self.lock:
            self.log["requests"].append(rec)
            if req.HasField("error_detail"):
                self.log["nacks"].append(dict(rec, code=req.error_detail.code,
                                              message=req.error_detail.message))
                return
            if req.response_nonce:
                self.log["acks"].append(rec)
                return
            kind = next((k for k, v in KINDS.items()
                         if v[2] == req.collection), None)
            if kind is None:
                st.out.put(("abort", "INVALID_ARGUMENT",
                            "unsupported collection " + req.collection))
                return
            st.subs[req.collection] = True
            st.out.put(self.legacy_response(st, req.collection))

    def on_xds_request(self, st, raw):
        delta = st.proto == "delta"
        if delta:
            req = PB["discovery"].DeltaDiscoveryRequest.FromString(raw)
            rec = {"type_url": req.type_url, "nonce": req.response_nonce,
                   "version": "", "delta": True}
        else:
            req = PB["discovery"].DiscoveryRequest.FromString(raw)
            rec = {"type_url": req.type_url, "nonce": req.response_nonce,
                   "version": req.version_info}
        with self.lock:
            self.log["requests"].append(rec)
            if not st.subs and not req.HasField("node"):
                st.out.put(("abort", "INVALID_ARGUMENT",
                            "missing node information"))
                return
            if req.HasField("node"):
                from google.protobuf import json_format
                self.log["nodes"].append({
                    "id": req.node.id,
                    "metadata": json_format.MessageToDict(req.node.metadata)})
            if req.HasField("error_detail"):
                self.log["nacks"].append(dict(rec, code=req.error_detail.code,
                                              message=req.error_detail.message))
                return
            if req.response_nonce and req.type_url in st.subs:
                self.log["acks"].append(rec)
                return
            st.subs[req.type_url] = True
            st.out.put(self.delta_response(st, req.type_url) if delta
                       else self.xds_response(st, req.type_url))

    # ---- server lifecycle ----
    def start(self):
        def legacy(request_iterator, context):
            yield from self.handle("legacy", request_iterator, context)

        def xds(request_iterator, context):
            yield from self.handle("xds", request_iterator, context)

        def delta(request_iterator, context):
            yield from self.handle("delta", request_iterator, context)

        handlers = {
            LEGACY_PATH: grpc.stream_stream_rpc_method_handler(legacy),
            XDS_PATH: grpc.stream_stream_rpc_method_handler(xds),
            DELTA_PATH: grpc.stream_stream_rpc_method_handler(delta),
        }

        class Generic(grpc.GenericRpcHandler):
            def service(self, details):
                return handlers.get(details.method)

        from concurrent import futures
        srv = grpc.server(futures.ThreadPoolExecutor(max_workers=32),
                          handlers=[Generic()],
                          options=[("grpc.so_reuseport", 1),
                                   ("grpc.max_receive_message_length",
                                    4 * 1024 * 1024)])
        addr = "127.0.0.1:%d" % self.port
        if self.args.tls_cert:
            with open(self.args.tls_key, "rb") as k, \
                    open(self.args.tls_cert, "rb") as c:
                creds = grpc.ssl_server_credentials([(k.read(), c.read())])
            port = srv.add_secure_port(addr, creds)
        else:
            port = srv.add_insecure_port(addr)
        if not port:
            raise RuntimeError("cannot bind " + addr)
        self.port = port
        srv.start()
        old, self.grpc_server = self.grpc_server, srv
        return old

    def stop(self, grace=None):
        if self.grpc_server:
            self.grpc_server.stop(grace)
            self.grpc_server = None


def control_handler(server):
    class H(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def reply(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            if self.path == "/state":
                with server.lock:
                    body = dict(server.log, open_streams=len(server.streams),
                                version=server.version)
                self.reply(200, body)
            else:
                self.reply(404, {"error": "not found"})

        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(n) or b"{}")
                self.reply(200, self.dispatch(body) or {"ok": True})
            except Exception as e:  # report, keep serving
                self.reply(400, {"error": repr(e)})

        def dispatch(self, b):
            s = server
            p = self.path
            if p == "/apply":
                kinds = set()
                with s.lock:
                    for o in b["objects"]:
                        s._put(o)
                        kinds.add(o["kind"])
                    s.version += 1
                for k in sorted(kinds):
                    s.push_kind(k)
            elif p in ("/delete", "/bad"):
                key = b.get("namespace", "default") + "/" + b["name"]
                with s.lock:
                    if p == "/delete":
                        s.store[b["kind"]].pop(key, None)
                    else:
                        s.store[b["kind"]][key] = Entry(bad=b.get("how", "garbage"))
                    s.version += 1
                s.push_kind(b["kind"])
            elif p == "/incremental":
                s.push_kind(b["kind"], incremental=b)
            elif p == "/reset":
                with s.lock:
                    for st in s.streams:
                        st.context.cancel()
            elif p == "/abort":
                with s.lock:
                    for st in s.streams:
                        st.out.put(("abort", b.get("code", "UNAVAILABLE"),
                                    b.get("message", "aborted by test")))
            elif p == "/trailers_only":
                with s.lock:
                    for _ in range(int(b.get("count", 1))):
                        s.trailers_only.append((b.get("code", "UNAVAILABLE"),
                                                b.get("message", "refused")))
            elif p == "/goaway":
                old = s.start()  # new listener first (SO_REUSEPORT)
                if old:
                    threading.Thread(target=old.stop, args=(5,),
                                     daemon=True).start()
            elif p == "/stop":
                s.stop(None)
            elif p == "/start":
                s.start()
            elif p == "/slow":
                s.delay = float(b.get("delay_ms", 0)) / 1000.0
            else:
                raise ValueError("unknown control " + p)
            return None
    return H


def main():
    global PB
    ap = argparse.ArgumentParser()
    ap.add_argument("--fixtures", default="")
    ap.add_argument("--port-file", required=True)
    ap.add_argument("--tls-cert")
    ap.add_argument("--tls-key")
    ap.add_argument("--token")
    ap.add_argument("--xds-version", default="v1")
    ap.add_argument("--identifier", default="")
    args = ap.parse_args()
    PB = compile_protos()
    server = Server(args)
    server.start()
    ctl = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                          control_handler(server))
    threading.Thread(target=ctl.serve_forever, daemon=True).start()
    tmp = args.port_file + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"port": server.port, "control_port": ctl.server_port}, f)
    os.rename(tmp, args.port_file)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop(None)


if __name__ == "__main__":
    main()
