#!/usr/bin/python3
"""Leader election between two `amc kube-dump --lease-name` replicas against
the fake API server: exactly one leads and only the leader writes statuses;
killing the leader (SIGKILL, no release) hands over within the lease
duration; stopping it (SIGTERM) releases the Lease and hands over at once;
a stale resourceVersion (409) never makes two leaders."""
import datetime
import os
import shutil
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from test_kube_source import KUBEFAKE, Dump, Fake, wait_until  # noqa: E402

LEASE = "/apis/coordination.k8s.io/v1/namespaces/amc-system/leases/amc"
DURATION = 3.0  # seconds; renew deadline 2, retry period 0.5


def replica(tmp, fake, ident):
    return Dump(tmp, ["--kubeconfig", fake.info["kubeconfig"],
                      "--resources", "gateways", "--namespaces", "ls",
                      "--lease-name", "amc", "--lease-namespace", "amc-system",
                      "--identity", ident, "--lease-duration", str(DURATION),
                      "--renew-deadline", "2", "--retry-period", "0.5",
                      "--write-status", "--backoff-ms", "100"], name=ident)


def renew_epoch(micro_time):
    """Seconds since the epoch of a Lease MicroTime (UTC, microseconds)."""
    dt = datetime.datetime.strptime(micro_time, "%Y-%m-%dT%H:%M:%S.%fZ")
    return dt.replace(tzinfo=datetime.timezone.utc).timestamp()


def leaders(reps):
    """Identities currently leading, from each replica's event stream."""
    out = []
    for ident, d in reps.items():
        evs = [e["event"] for e in d.snapshot()
               if e["event"] in ("leading", "stopped_leading")]
        if evs and evs[-1] == "leading" and d.proc.poll() is None:
            out.append(ident)
    return out


def status_writers(fake):
    return {r["user"] for r in fake.requests() if r["method"] == "PATCH"}


def main():
    if not os.path.exists(KUBEFAKE):
        print("kubefake not found at %s" % KUBEFAKE)
        return 1
    tmp = tempfile.mkdtemp(prefix="amc-lease-")
    fake = Fake(tmp)
    reps = {}
    ok = False
    try:
        fake.ns("amc-system")
        fake.ns("ls")
        fake.ok("POST", "/apis/networking.istio.io/v1/namespaces/ls/gateways",
                {"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
                 "metadata": {"name": "gw", "namespace": "ls"},
                 "spec": {"servers": []}})
        for ident in ("amc-a", "amc-b"):
            reps[ident] = replica(tmp, fake, ident)
        first = wait_until(lambda: leaders(reps), 10, "a leader")
        time.sleep(2 * DURATION)  # several renewals: still one leader
        assert leaders(reps) == first and len(first) == 1, leaders(reps)
        leader = first[0]
        follower = [i for i in reps if i != leader][0]
        lease = fake.ok("GET", LEASE)
        assert lease["spec"]["holderIdentity"] == leader
        assert lease["spec"]["leaseDurationSeconds"] == int(DURATION)
        # Only the leader wrote the Gateway's status; the follower skipped.
        reps[leader].wait(event="status", name="gw", result="written")
        reps[follower].wait(event="status", name="gw", result="skipped")
        patches = [r for r in fake.requests() if r["method"] == "PATCH"]
        assert len(patches) == 1, patches
        assert not reps[follower].find(event="status", result="written")

        # Kill the leader without a release: the follower takes over once
        # the lease has expired, within the lease duration (+ retry slack).
        fake.clear_requests()
        t0 = time.time()
        reps[leader].stop(signal.SIGKILL)
        # The dead leader's last renewal: the follower may take over only a
        # full lease duration after it (measured from the renewal itself, not
        # from the kill: under load the leader may have renewed late).
        last = fake.ok("GET", LEASE)["spec"]
        assert last["holderIdentity"] == leader, last
        renewed = renew_epoch(last["renewTime"])
        wait_until(lambda: leaders(reps) == [follower], DURATION + 6,
                   "takeover after SIGKILL")
        took = time.time() - t0
        print("takeover after SIGKILL: %.2fs (lease %.1fs)" % (took, DURATION))
        # not before expiry (0.05 s for the clock's microsecond rounding)
        assert time.time() >= renewed + DURATION - 0.05, \
            (time.time() - renewed)
        lease = fake.ok("GET", LEASE)
        assert lease["spec"]["holderIdentity"] == follower
        assert lease["spec"]["leaseTransitions"] >= 1
        # The new leader writes statuses again (its memory starts empty).
        reps[follower].wait(event="status", name="gw", result="written")

        # A third replica joins as follower; SIGTERM on the leader releases
        # the Lease and the newcomer takes over at once.
        reps["amc-c"] = replica(tmp, fake, "amc-c")
        time.sleep(1.0)
        assert leaders(reps) == [follower]
        t0 = time.time()
        reps[follower].stop(signal.SIGTERM)
        assert reps[follower].find(event="stopped_leading")
        wait_until(lambda: leaders(reps) == ["amc-c"], DURATION + 2,
                   "takeover after release")
        took = time.time() - t0
        print("takeover after release: %.2fs" % took)
        assert took < DURATION, took
        ok = True
    finally:
        for d in reps.values():
            if d.proc.poll() is None:
                d.stop()
        fake.stop()
        if ok:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("kept %s for inspection" % tmp)
    print("ok   lease")
    return 0


if __name__ == "__main__":
    sys.exit(main())
