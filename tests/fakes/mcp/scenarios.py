"""Scenarios run by tests/integration/test_mcp_legacy.py and test_mcp_xds.py
against `amc mcp-dump` and the fake server, for one protocol each. Each
returns the list of test functions for harness.run()."""
import copy
import os

from harness import (KINDS, Dump, McpServer, fixture_objects, state_of,
                     wait_until)


def scenarios(proto):
    xds = proto in ("xds", "delta")

    def start(tmp, cleanup, *server_args, dump_args=()):
        srv = McpServer(tmp, *server_args)
        cleanup.append(srv)
        args = (["--delta"] if proto == "delta" else
                ["--xds"] if xds else []) + list(dump_args)
        d = Dump(tmp, "http://127.0.0.1:%d" % srv.port, *args)
        cleanup.append(d)
        d.wait_synced_all()
        return srv, d

    def fixture(kind):
        return copy.deepcopy(next(o for o in fixture_objects()
                                  if o["kind"] == kind))

    def assert_no_delete(events, allowed=()):
        bad = [e for e in events if e["event"] == "delete" and
               (e["kind"], e["namespace"], e["name"]) not in allowed]
        assert not bad, "spurious deletes: %r" % bad

    def acked(srv, key):
        return [a for a in srv.state()["acks"] if a.get(key)]

    def test_initial_sync_matches_fixtures(tmp, cleanup):
        srv, d = start(tmp, cleanup)
        st = state_of(d.snapshot())
        want = {(o["kind"], o["metadata"]["namespace"], o["metadata"]["name"]):
                o for o in fixture_objects()}
        assert set(st) == set(want), (sorted(st), sorted(want))
        for k, o in want.items():
            got = st[k]
            assert got == o, "%s differs:\n got  %r\n want %r" % (k, got, o)
        # every subscription was ACKed with the nonce of its response
        key = "type_url" if xds else "collection"
        wait_until(lambda: len({a[key] for a in acked(srv, "nonce")}) ==
                   len(KINDS) * (2 if xds else 1), 10, "ACKs of every type")

    def test_push_update(tmp, cleanup):
        srv, d = start(tmp, cleanup)
        gw = fixture("Gateway")
        gw["spec"]["servers"][0]["hosts"] = ["new.example.com"]
        m = d.mark()
        n_acks = len(srv.state()["acks"])
        srv.control("/apply", {"objects": [gw]})
        e = d.wait_event(lambda e: e["event"] == "upsert" and
                         e["kind"] == "Gateway", m, what="updated Gateway")
        assert e["object"]["spec"]["servers"][0]["hosts"] == \
            ["new.example.com"], e
        assert_no_delete(d.since(m))
        wait_until(lambda: len(srv.state()["acks"]) > n_acks, 10,
                   "ACK of the update")

    def test_delete(tmp, cleanup):
        srv, d = start(tmp, cleanup)
        m = d.mark()
        srv.control("/delete", {"kind": "VirtualService",
                                "namespace": "bookinfo", "name": "bookinfo"})
        d.wait_event(lambda e: e["event"] == "delete" and
                     e["kind"] == "VirtualService", m, what="delete")
        assert_no_delete(d.since(m), {("VirtualService", "bookinfo",
                                       "bookinfo")})
        st = state_of(d.snapshot())
        assert len(st) == 3 and ("VirtualService", "bookinfo",
                                 "bookinfo") not in st, sorted(st)

    def nack_case(how, expect):
        def test(tmp, cleanup):
            srv, d = start(tmp, cleanup)
            before = state_of(d.snapshot())
            m = d.mark()
            srv.control("/bad", {"kind": "Gateway", "namespace": "bookinfo",
                                 "name": "broken", "how": how})
            ev = d.wait_event(lambda e: e["event"] == "nack", m, what="NACK")
            assert expect in ev["detail"], ev
            nacks = wait_until(lambda: srv.state()["nacks"], 10,
                               "the server to see the NACK")
            assert nacks[0]["code"] == 3, nacks
            assert expect in nacks[0]["message"], nacks
            assert nacks[0]["nonce"], nacks
            # nothing that was serving is lost, nothing half-applied
            changes = [e for e in d.since(m)
                       if e["event"] in ("upsert", "delete")]
            assert not changes, changes
            assert state_of(d.snapshot()) == before
            # once the bad resource is gone, updates flow again
            srv.control("/delete", {"kind": "Gateway",
                                    "namespace": "bookinfo",
                                    "name": "broken"})
            gw = fixture("Gateway")
            gw["metadata"]["labels"]["rev"] = "2"
            m2 = d.mark()
            srv.control("/apply", {"objects": [gw]})
            e = d.wait_event(lambda e: e["event"] == "upsert" and
                             e["kind"] == "Gateway", m2, what="upsert")
            assert e["object"]["metadata"]["labels"]["rev"] == "2"
            assert_no_delete(d.since(m))
        test.__name__ = "test_nack_" + how
        return test

    def fault_case(name, fault, expect_detail, dump_args=()):
        """fault(srv, d) breaks the stream and returns after queueing an
        update; the client must reconnect, resubscribe and converge."""
        def test(tmp, cleanup):
            srv, d = start(tmp, cleanup, dump_args=dump_args)
            m = d.mark()
            gw = fixture("Gateway")
            gw["metadata"]["labels"]["fault"] = name
            fault(srv, d, m, gw)
            if expect_detail:
                ev = d.wait_event(lambda e: e["event"] == "disconnected", m,
                                  what="disconnect")
                assert expect_detail in ev["detail"], ev
            e = d.wait_event(lambda e: e["event"] == "upsert" and
                             e["kind"] == "Gateway" and
                             e["object"]["metadata"]["labels"].get("fault") ==
                             name, m, 20, "the update after the fault")
            d.wait_synced_all(m, 20)
            # it did reconnect and resubscribe
            assert any(e["event"] == "connected" for e in d.since(m))
            assert_no_delete(d.since(m))
            st = state_of(d.snapshot())
            assert len(st) == 4, sorted(st)
            assert e["object"]["spec"] == fixture("Gateway")["spec"]
        test.__name__ = "test_fault_" + name
        return test

    def f_reset(srv, d, m, gw):
        srv.control("/reset")
        srv.control("/apply", {"objects": [gw]})

    def f_abort(srv, d, m, gw):
        srv.control("/abort", {"code": "UNAVAILABLE",
                               "message": "going away: 50% done"})
        d.wait_event(lambda e: e["event"] == "disconnected", m, what="end")
        srv.control("/apply", {"objects": [gw]})

    def f_trailers_only(srv, d, m, gw):
        srv.control("/trailers_only", {"code": "UNAVAILABLE", "count": 2,
                                       "message": "try later"})
        srv.control("/reset")
        srv.control("/apply", {"objects": [gw]})

    def f_goaway(srv, d, m, gw):
        srv.control("/goaway")
        srv.control("/apply", {"objects": [gw]})

    def f_restart(srv, d, m, gw):
        srv.control("/stop")
        d.wait_event(lambda e: e["event"] == "disconnected", m, what="end")
        srv.control("/apply", {"objects": [gw]})  # while nobody listens
        wait_until(lambda: sum(e["event"] == "disconnected"
                               for e in d.since(m)) >= 2, 10,
                   "a refused reconnect")
        srv.control("/start")

    tests = [
        test_initial_sync_matches_fixtures,
        test_push_update,
        test_delete,
        nack_case("garbage", "bookinfo/broken: spec: cannot decode "
                  "istio.networking.v1alpha3.Gateway"),
        nack_case("badname", "metadata.name must be"),
        nack_case("wrongtype", "does not match the subscribed type"),
        nack_case("duplicate", "Gateway bookinfo/bookinfo-gateway appears "
                  "more than once"),
        fault_case("reset", f_reset, "CANCELLED"),
        fault_case("abort", f_abort, "UNAVAILABLE: going away: 50% done"),
        fault_case("trailers_only", f_trailers_only, None),
        fault_case("goaway", f_goaway, "GOAWAY"),
        fault_case("restart", f_restart, "UNAVAILABLE"),
    ]

    def test_trailers_only_status_seen(tmp, cleanup):
        srv, d = start(tmp, cleanup)
        m = d.mark()
        srv.control("/trailers_only", {"code": "UNAVAILABLE", "count": 2,
                                       "message": "try later"})
        srv.control("/reset")
        wait_until(lambda: sum(e["event"] == "disconnected" and
                               e["detail"] == "UNAVAILABLE: try later"
                               for e in d.since(m)) == 2, 15,
                   "two Trailers-Only refusals")
        d.wait_synced_all(m, 15)
        assert_no_delete(d.since(m))

    def test_slow_server_no_disconnect(tmp, cleanup):
        srv, d = start(tmp, cleanup)
        m = d.mark()
        srv.control("/slow", {"delay_ms": 2500})
        gw = fixture("Gateway")
        gw["metadata"]["labels"]["slow"] = "yes"
        srv.control("/apply", {"objects": [gw]})
        d.wait_event(lambda e: e["event"] == "upsert" and
                     e["object"]["metadata"]["labels"].get("slow"), m, 20,
                     "the slow update")
        assert not [e for e in d.since(m) if e["event"] == "disconnected"]

    def test_large_push(tmp, cleanup):
        """A push of several MB (one ~5 MB message) arrives whole."""
        srv, d = start(tmp, cleanup)
        m = d.mark()
        gw = fixture("Gateway")
        hosts = ["h%06d.bookinfo.example.com" % i for i in range(200000)]
        gw["spec"]["servers"][0]["hosts"] = hosts
        srv.control("/apply", {"objects": [gw]})
        e = d.wait_event(lambda e: e["event"] == "upsert" and
                         e["kind"] == "Gateway", m, 60, "the large update")
        assert e["object"]["spec"]["servers"][0]["hosts"] == hosts
        assert not [e for e in d.since(m) if e["event"] == "disconnected"]

    def test_frozen_server(tmp, cleanup):
        """A server that stops answering (SIGSTOP: the kernel still accepts
        connections) is caught by the PING timeout and then the connect
        timeout; once it runs again the client converges, deleting nothing."""
        import signal
        srv, d = start(tmp, cleanup, dump_args=[
            "--keepalive-ms", "300", "--keepalive-timeout-ms", "500",
            "--connect-timeout-ms", "500"])
        m = d.mark()
        os.kill(srv.proc.pid, signal.SIGSTOP)
        try:
            d.wait_event(lambda e: e["event"] == "disconnected" and
                         "did not answer a PING" in e["detail"], m, 10,
                         "keepalive timeout")
            d.wait_event(lambda e: e["event"] == "disconnected" and
                         "no response from" in e["detail"], m, 10,
                         "connect timeout")
        finally:
            os.kill(srv.proc.pid, signal.SIGCONT)
        gw = fixture("Gateway")
        gw["metadata"]["labels"]["thawed"] = "yes"
        srv.control("/apply", {"objects": [gw]})
        d.wait_event(lambda e: e["event"] == "upsert" and
                     e["object"]["metadata"]["labels"].get("thawed"), m, 20,
                     "the update after the thaw")
        assert_no_delete(d.since(m))

    tests += [test_trailers_only_status_seen, test_slow_server_no_disconnect,
              test_large_push, test_frozen_server]
    if proto == "delta":
        for t in tests:
            t.__name__ = t.__name__.replace("test_", "test_delta_", 1)
    return tests
