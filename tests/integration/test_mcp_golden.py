"""Golden check across sources: the same Istio objects delivered as fs://
YAML, as Kubernetes JSON, and over MCP (legacy and xDS, protobuf from the
fake server) give byte-identical `amc translate` output. The Kubernetes
objects the rules also need (Services, Pods, EndpointSlices, Secrets) come
from the same YAML in every case, as they would from the Kubernetes source.
Input: examples/bookinfo."""
import json
import os
import subprocess
import sys

SOURCE = os.environ.get("AMC_SOURCE_DIR",
                        os.path.join(os.path.dirname(__file__), "..", ".."))
sys.path.insert(0, os.path.join(SOURCE, "tests", "fakes", "mcp"))

import yaml  # noqa: E402
from harness import KINDS, Dump, McpServer, amc_bin, run, state_of  # noqa

EXAMPLE = os.path.join(SOURCE, "examples", "bookinfo")


def load_example():
    istio, other = [], []
    for n in sorted(os.listdir(EXAMPLE)):
        if n.endswith(".yaml"):
            with open(os.path.join(EXAMPLE, n)) as f:
                for d in yaml.safe_load_all(f):
                    if d:
                        (istio if d.get("kind") in KINDS else other).append(d)
    return istio, other


def translate(*paths):
    p = subprocess.run([amc_bin(), "translate"] + list(paths),
                       capture_output=True)
    assert p.returncode in (0, 1), p.stderr.decode()
    return p.stdout


def write(tmp, name, data, as_json):
    path = os.path.join(tmp, name)
    with open(path, "w") as f:
        if as_json:
            json.dump(data, f, indent=1)
        else:
            yaml.safe_dump_all(data, f)
    return path


def test_yaml_json_mcp_translate_identically(tmp, cleanup):
    istio, other = load_example()
    assert len(istio) >= 4 and other, "examples/bookinfo changed shape"
    k8s = write(tmp, "k8s.yaml", other, False)
    from_yaml = translate(EXAMPLE)
    assert b'"virtualservice"' in from_yaml, from_yaml[:500]
    # the API server's JSON for the same objects
    from_json = translate(write(tmp, "istio.json", istio, True), k8s)
    assert from_json == from_yaml, "Kubernetes JSON differs from YAML"
    srv = McpServer(tmp, fixtures=EXAMPLE)
    cleanup.append(srv)
    for url in ("mcp://127.0.0.1:%d" % srv.port,
                "xds://127.0.0.1:%d" % srv.port):
        d = Dump(tmp, url, "--once", "--timeout-ms", "15000")
        cleanup.append(d)
        d.proc.wait(30)
        d.reader.join(10)
        assert d.proc.returncode == 0, d.stderr_text()
        objs = list(state_of(d.snapshot()).values())
        assert len(objs) == len(istio), (len(objs), len(istio))
        from_mcp = translate(write(tmp, "mcp.json", objs, True), k8s)
        if from_mcp != from_yaml:
            with open(os.path.join(tmp, "from_yaml.json"), "wb") as f:
                f.write(from_yaml)
            with open(os.path.join(tmp, "from_mcp.json"), "wb") as f:
                f.write(from_mcp)
            raise AssertionError("%s: translate output differs; see diff %s "
                                 "%s" % (url, f.name.replace("mcp", "yaml"),
                                         f.name))


if __name__ == "__main__":
    run([test_yaml_json_mcp_translate_identically])
