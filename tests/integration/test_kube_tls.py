#!/usr/bin/python3
"""kubeconfig `tls-server-name` against the fake API server.

The fake serves a certificate that names only `kube.example` (and not the
address 127.0.0.1 the kubeconfig's `server` uses). Without tls-server-name
amc must refuse the server (host name mismatch); with `tls-server-name:
kube.example` it connects to 127.0.0.1, verifies the certificate against
kube.example, sends it as SNI, keeps Host as the server's address, and
lists; with another name it refuses again.
"""
import json
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_kube_source import (KUBEFAKE, Dump, Fake, objects,  # noqa: E402
                              wait_until)

NAME = "kube.example"


def kubeconfig(tmp, fake, server_name):
    """The fake's kubeconfig, with tls-server-name set (or not)."""
    with open(fake.info["kubeconfig"]) as f:
        cfg = json.load(f)
    if server_name:
        cfg["clusters"][0]["cluster"]["tls-server-name"] = server_name
    path = os.path.join(tmp, "kc-%s.json" % (server_name or "none"))
    with open(path, "w") as f:
        json.dump(cfg, f)
    return path


# libcurl's messages for a certificate that does not name the host.
MISMATCH = ("no alternative certificate subject name matches",
            "does not match target host name")


def list_once(tmp, fake, server_name, expect_ok):
    """`kube-dump --once` of Services; returns the Dump once it exited
    (expect_ok) or logged a certificate name mismatch."""
    name = "dump-%s" % (server_name or "none")
    log = os.path.join(tmp, name + ".log")
    d = Dump(tmp, ["--kubeconfig", kubeconfig(tmp, fake, server_name),
                   "--once", "--resources", "services", "--namespaces",
                   "tls", "--backoff-ms", "100"], name=name)
    try:
        if expect_ok:
            assert d.proc.wait(10) == 0
        else:
            def mismatch():
                with open(log) as f:
                    text = f.read()
                return any(m in text for m in MISMATCH)
            wait_until(mismatch, 10, "a certificate name mismatch")
            assert d.proc.poll() is None  # still retrying
    finally:
        d.stop()
    return d


def refused(d):
    assert not d.find(event="synced"), d.snapshot()
    assert not objects(d, "Service")


def main():
    if not os.path.exists(KUBEFAKE):
        print("kubefake not found at %s" % KUBEFAKE)
        return 1
    tmp = tempfile.mkdtemp(prefix="amc-kube-tls-")
    fake = Fake(tmp, "--server-names", NAME)
    ok = False
    try:
        fake.ctx.check_hostname = False  # the test's own calls (chain checked)
        fake.ns("tls")
        fake.service("tls", "web")

        # 1. No tls-server-name: 127.0.0.1 is not in the certificate.
        refused(list_once(tmp, fake, None, False))
        print("ok   refused without tls-server-name")

        # 2. tls-server-name names the certificate: listed.
        fake.clear_requests()
        d = list_once(tmp, fake, NAME, True)
        assert list(objects(d, "Service")) == ["tls/web"], d.snapshot()
        reqs = [r for r in fake.requests() if r["user"] == "admin"]
        assert reqs, fake.requests()
        for r in reqs:
            assert r["sni"] == NAME, r
            assert r["host"] == "127.0.0.1:%d" % fake.info["port"], r
        print("ok   listed with tls-server-name %s" % NAME)

        # 3. Another name: refused again.
        refused(list_once(tmp, fake, "other.example", False))
        print("ok   refused with another tls-server-name")
        ok = True
    finally:
        fake.stop()
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("kept %s for inspection" % tmp)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
