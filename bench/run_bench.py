#!/usr/bin/python3
"""amc's controller benchmarks: `amc run` on fs:// against the AVI simulator.

For each mesh size (bench/gen_mesh.py) it measures:
  translate    input objects per second through the rules (`amc translate
               --stats`: objects loaded / time translating all gateways)
  cold sync    time from process start to /readyz 200 against an empty AVI,
               and the number of AVI write calls
  RSS          VmRSS and VmHWM of amc once synced
  no-op        write calls made by: a full resync (--resync), a SIGHUP with
               unchanged rules, a reload whose output is identical, and a
               restart against the already-synced AVI (all should be 0);
               the time of a no-op reload (SIGHUP, unchanged digest) and of
               an identical-output reload (re-translate + diff everything)
  latency      for single route changes (one VirtualService's weights, by
               an atomic file save): time from the rename to the first AVI
               request (simulator arrival time), p50/p99 over --changes
               changes, the in-process store-change-to-sync p50/p99 from
               amc_event_to_sync_seconds, and AVI calls per change

  bench/run_bench.py --amc build/amc [--sizes 1k,10k] [--changes 50]
Prints a Markdown table (and JSON with --json FILE).
"""
import argparse
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = "/usr/bin/python3"
sys.path.insert(0, os.path.join(ROOT, "tests", "integration"))
import runlib  # noqa: E402

SIZES = {
    # name: (gateways, virtualservices, services, endpoints)
    "100": (10, 100, 200, 1000),
    "1k": (10, 1000, 2000, 10000),
    "10k": (100, 10000, 20000, 100000),
}


def gen(size, out):
    g, v, s, e = SIZES[size]
    subprocess.run([PY, os.path.join(HERE, "gen_mesh.py"), "--gateways",
                    str(g), "--virtualservices", str(v), "--services", str(s),
                    "--endpoints", str(e), "--out", out], check=True,
                   stdout=subprocess.DEVNULL)


def translate_rate(amc, mesh, runs=2):
    best = None
    for _ in range(runs):
        p = subprocess.run([amc, "translate", "--stats", mesh],
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                           text=True, cwd=ROOT, check=True)
        m = re.search(r"(\d+) objects loaded in ([\d.]+) ms.*translated into "
                      r"(\d+) AVI objects in ([\d.]+) ms", p.stderr)
        objs, ms, avi = int(m.group(1)), float(m.group(4)), int(m.group(3))
        rate = objs / (ms / 1000.0)
        if best is None or rate > best[0]:
            best = (rate, objs, avi, ms)
    return best


def rss(pid):
    out = {}
    with open("/proc/%d/status" % pid) as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024.0
    return out


def writes(sim):
    return runlib.sim_writes(sim)


def requests(sim):
    return runlib.sim_control(sim, "GET", "/_sim/requests")["requests"]


def clear(sim):
    runlib.sim_control(sim, "DELETE", "/_sim/requests")


def pct(values, p):
    if not values:
        return float("nan")
    v = sorted(values)
    k = (len(v) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(v) - 1)
    return v[lo] + (v[hi] - v[lo]) * (k - lo)


def hist_quantile(samples, name, q):
    """Quantile from a parsed Prometheus histogram (upper bucket bound)."""
    buckets = sorted((float(l["le"]), v) for n, l, v in samples
                     if n == name + "_bucket")
    total = buckets[-1][1] if buckets else 0
    for le, c in buckets:
        if total and c >= q * total:
            return le
    return float("nan")


# Options given to every `amc run` (--amc-arg, e.g. --incremental).
AMC_ARGS = []


def start_amc(mesh, sim, workdir, extra=()):
    t0 = time.monotonic()
    r = runlib.AmcRun(mesh, "--avi-rate", "100000", "--avi-burst", "1000",
                      "--fs-debounce-ms", "0", "--log-level", "info",
                      *AMC_ARGS, *extra, sim=sim, workdir=workdir)
    r.wait_ready(timeout=900)
    return r, time.monotonic() - t0


def idle(r, timeout=600):
    runlib.wait_for(lambda: r.metric("amc_queue_depth") == 0
                    and r.metric("amc_queue_in_flight") == 0, timeout,
                    "idle queue", interval=0.05)


def bench_size(amc, size, changes, tmp):
    res = {"size": size, "mesh": dict(zip(("gateways", "virtualservices",
                                           "services", "endpoints"),
                                          SIZES[size]))}
    mesh = os.path.join(tmp, "mesh-" + size)
    gen(size, mesh)
    rate, objs, avi_objs, ms = translate_rate(amc, mesh)
    res["translate"] = {"objects": objs, "avi_objects": avi_objs,
                        "ms": ms, "objects_per_s": rate}
    sim = runlib.start_sim()
    try:
        work = os.path.join(tmp, "run-" + size)
        os.makedirs(work)
        r, cold = start_amc(mesh, sim, work)
        idle(r)
        res["cold_sync"] = {"seconds": cold, "writes": len(writes(sim))}
        res["rss_mb"] = rss(r.proc.pid)
        # No-op resync: every gateway re-translated and diffed.
        clear(sim)
        # No-op reload: SIGHUP with unchanged rules.
        r.signal(signal.SIGHUP)
        runlib.wait_for(lambda: "signal=SIGHUP" in r.logs(), 10, "SIGHUP")
        time.sleep(0.2)
        idle(r)
        res["noop_sighup_writes"] = len(writes(sim))
        # Single route changes.
        lat, calls = [], []
        gw_file = os.path.join(mesh, "gateways", "gw-0.json")
        with open(gw_file) as fh:
            doc = json.load(fh)
        vs = [i for i in doc["items"] if i["kind"] == "VirtualService"][0]
        for n in range(changes):
            clear(sim)
            route = vs["spec"]["http"][0]["route"]
            route[0]["weight"] = 50 + (n % 40)
            route[1]["weight"] = 100 - route[0]["weight"]
            tmpf = os.path.join(mesh, "gateways", ".gw-0.json.tmp")
            with open(tmpf, "w") as fh:
                json.dump(doc, fh, separators=(",", ":"))
            t0 = time.time()
            os.rename(tmpf, gw_file)
            w = runlib.wait_for(lambda: writes(sim), 30, "the change's call",
                                interval=0.002)
            lat.append((w[0]["time"] - t0) * 1000.0)
            idle(r)
            calls.append(len(writes(sim)))
        fams = r.metrics()
        samples = fams["amc_event_to_sync_seconds"]["samples"]
        res["change"] = {
            "n": changes,
            "event_to_call_ms_p50": pct(lat, 50),
            "event_to_call_ms_p99": pct(lat, 99),
            "store_to_sync_ms_p50": 1000 * hist_quantile(
                samples, "amc_event_to_sync_seconds", 0.5),
            "store_to_sync_ms_p99": 1000 * hist_quantile(
                samples, "amc_event_to_sync_seconds", 0.99),
            "calls_per_change": statistics.mean(calls) if calls else 0,
        }
        # Reload with identical output (a comment added to a rules copy).
        r.stop()
        rules = os.path.join(tmp, "rules-" + size)
        shutil.copytree(os.path.join(ROOT, "rules"), rules)
        clear(sim)
        r, restart = start_amc(mesh, sim, work, ("--rules", rules,
                                                 "--resync", "0"))
        idle(r)
        res["restart"] = {"seconds": restart, "writes": len(writes(sim))}
        clear(sim)
        r.signal(signal.SIGHUP)
        runlib.wait_for(lambda: r.log_events("rules.unchanged") or
                        "signal=SIGHUP" in r.logs(), 10, "SIGHUP")
        time.sleep(0.2)
        t0 = time.monotonic()
        with open(os.path.join(rules, "gateway.lua"), "a") as fh:
            fh.write("\n-- benchmark: same output\n")
        runlib.wait_for(lambda: r.log_events("rules.reloaded"), 120,
                        "reload")
        time.sleep(0.1)
        idle(r)
        ev = r.log_events("rules.reloaded")[-1]
        res["reload_same_output"] = {
            "validate_seconds": float(ev.get("seconds", "nan")),
            "total_seconds": time.monotonic() - t0 - 0.1,
            "writes": len(writes(sim))}
        # No-op reload timing (digest unchanged): from the debug line.
        r.stop()
        r, _ = start_amc(mesh, sim, work, ("--rules", rules, "--log-level",
                                           "debug", "--resync", "0"))
        idle(r)
        times = []
        for _ in range(5):
            n0 = len(r.log_events("rules.unchanged"))
            r.signal(signal.SIGHUP)
            runlib.wait_for(lambda: len(r.log_events("rules.unchanged"))
                            > n0, 10, "no-op reload")
            times.append(float(r.log_events("rules.unchanged")[-1]
                               ["seconds"]))
        res["noop_reload_ms"] = 1000 * min(times)
        # No-op resync: --resync makes amc re-translate everything. The
        # period leaves room for one whole pass.
        clear(sim)
        r.stop()
        period = int(3 * ms / 1000.0) + 3
        r, _ = start_amc(mesh, sim, work, ("--rules", rules, "--resync",
                                           str(period)))
        runlib.wait_for(lambda: r.log_events("sync.resync"), period + 60,
                        "a resync")
        idle(r)
        res["noop_resync_writes"] = len(writes(sim))
        r.stop()
    finally:
        sim.stop()
    return res


def table(results):
    rows = [
        ("mesh (gateways / VS / Services / endpoints)", lambda r: "%d / %d / "
         "%d / %d" % tuple(r["mesh"][k] for k in ("gateways",
                                                  "virtualservices",
                                                  "services", "endpoints"))),
        ("translate throughput (input objects/s, rules only)",
         lambda r: "%.0f" % r["translate"]["objects_per_s"]),
        ("AVI objects", lambda r: "%d" % r["translate"]["avi_objects"]),
        ("cold sync: time to ready (s)",
         lambda r: "%.2f" % r["cold_sync"]["seconds"]),
        ("cold sync: AVI write calls",
         lambda r: "%d" % r["cold_sync"]["writes"]),
        ("RSS once synced (MB)", lambda r: "%.1f" % r["rss_mb"]["VmRSS"]),
        ("peak RSS (MB)", lambda r: "%.1f" % r["rss_mb"]["VmHWM"]),
        ("route change: file save -> first AVI call, p50 / p99 (ms)",
         lambda r: "%.1f / %.1f" % (r["change"]["event_to_call_ms_p50"],
                                    r["change"]["event_to_call_ms_p99"])),
        ("route change: store change -> sync start, p50 / p99 (ms, "
         "bucket bound)",
         lambda r: "%.2f / %.2f" % (r["change"]["store_to_sync_ms_p50"],
                                    r["change"]["store_to_sync_ms_p99"])),
        ("AVI calls per route change",
         lambda r: "%.1f" % r["change"]["calls_per_change"]),
        ("no-op reload (SIGHUP, same rules): time (ms)",
         lambda r: "%.1f" % r["noop_reload_ms"]),
        ("no-op reload: AVI writes", lambda r: "%d" % r["noop_sighup_writes"]),
        ("reload with identical output: validate / total (s)",
         lambda r: "%.2f / %.2f" % (r["reload_same_output"]
                                    ["validate_seconds"],
                                    r["reload_same_output"]
                                    ["total_seconds"])),
        ("reload with identical output: AVI writes",
         lambda r: "%d" % r["reload_same_output"]["writes"]),
        ("no-op resync: AVI writes", lambda r: "%d" % r["noop_resync_writes"]),
        ("restart against synced AVI: time to ready (s)",
         lambda r: "%.2f" % r["restart"]["seconds"]),
        ("restart against synced AVI: AVI writes",
         lambda r: "%d" % r["restart"]["writes"]),
    ]
    out = ["| measure | " + " | ".join(r["size"] + " VS" for r in results)
           + " |", "|---|" + "---|" * len(results)]
    for label, f in rows:
        out.append("| %s | %s |" % (label, " | ".join(f(r) for r in results)))
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--amc", default=os.path.join(ROOT, "build", "amc"))
    ap.add_argument("--sizes", default="1k,10k")
    ap.add_argument("--changes", type=int, default=50)
    ap.add_argument("--json")
    ap.add_argument("--amc-arg", action="append", default=[],
                    help="extra option for every `amc run` (repeatable), "
                    "e.g. --amc-arg=--incremental")
    a = ap.parse_args()
    AMC_ARGS.extend(a.amc_arg)
    os.environ["AMC_BIN"] = os.path.abspath(a.amc)
    os.environ["AMC_SOURCE_DIR"] = ROOT
    runlib.AMC_BIN = os.path.abspath(a.amc)
    tmp = tempfile.mkdtemp(prefix="amc-bench-")
    try:
        results = []
        for size in a.sizes.split(","):
            print("== %s" % size, file=sys.stderr)
            res = bench_size(os.path.abspath(a.amc), size, a.changes, tmp)
            print(json.dumps(res, indent=1), file=sys.stderr)
            results.append(res)
        if a.json:
            with open(a.json, "w") as fh:
                json.dump(results, fh, indent=1)
        print(table(results))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
