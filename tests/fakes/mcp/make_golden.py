#!/usr/bin/python3
"""Regenerates tests/fakes/mcp/golden/ from fixtures/: the same Istio objects
as Kubernetes JSON (fixtures.json, what the API server returns) and as MCP
protobuf (<kind>-<ns>-<name>.pb: serialized istio.mcp.v1alpha1.Resource,
encoded by python3-protobuf's json_format exactly as the fake server sends
them). tests/unit/test_mcp_golden.c checks that all three forms (YAML, JSON,
protobuf) end up as byte-identical canonical JSON in amc's store.
Run: /usr/bin/python3 tests/fakes/mcp/make_golden.py"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import mcpserver  # noqa: E402


class Args:
    fixtures = os.path.join(mcpserver.HERE, "fixtures")
    xds_version = "v1"
    identifier = ""


def main():
    mcpserver.PB = mcpserver.compile_protos()
    out = os.path.join(mcpserver.HERE, "golden")
    os.makedirs(out, exist_ok=True)
    for n in os.listdir(out):
        os.remove(os.path.join(out, n))
    objs = mcpserver.load_objects(Args.fixtures)
    with open(os.path.join(out, "fixtures.json"), "w") as f:
        json.dump(objs, f, indent=2)
        f.write("\n")
    srv = mcpserver.Server(Args())
    for kind in mcpserver.KINDS:
        for key, entry in sorted(srv.store[kind].items()):
            r = srv.resource(kind, key, entry)
            name = "%s-%s.pb" % (kind.lower(), key.replace("/", "-"))
            with open(os.path.join(out, name), "wb") as f:
                f.write(r.SerializeToString())


if __name__ == "__main__":
    main()
