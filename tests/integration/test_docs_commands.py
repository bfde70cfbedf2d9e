"""The guides' commands run, so the docs cannot go stale.

docs/operator-guide.md and docs/rule-author-guide.md mark their shell
blocks with an HTML comment on the line before the fence (invisible when
rendered):

    <!-- doc-test -->              run it (exit status 0 expected)
    <!-- doc-test: exit=N -->      run it, exit status N expected
    <!-- doc-test: cluster -->     run it with KUBECONFIG pointing at a fake
                                   API server (kubefake, one per guide; it
                                   serves apps/v1 Deployments through a CRD)
                                   and AVI_PASSWORD set
    <!-- doc-test: skip (why) -->  not run; the reason is mandatory
    <!-- doc-test: output -->      before any fenced block: the output of
                                   the previous run block (stdout and stderr).
                                   A line `...` matches any number of lines,
                                   and `...` inside a line matches any text

Every ```sh block of the guides must carry one of the run/skip markers.
Blocks of one guide run in order, in one scratch copy of the repository
(rules/, examples/, tests/golden/, deploy/, scripts/), with bash -e -o
pipefail and an `amc` on PATH that is $AMC_BIN.

When `amc run` exists, the operator guide's metrics table must list exactly
the amc_* metrics a running amc exposes, and every `amc.yaml` key in its
settings table must be an `amc run` option."""
import os
import re
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deploy_testlib import (AMC, SRC, amc_has_run, run_help,  # noqa: E402
                            run_tests, wait_for)

DOCS = ["docs/rule-author-guide.md", "docs/operator-guide.md"]
COPY = ["rules", "examples", "tests/golden", "deploy", "scripts"]
MARK = re.compile(r"^<!--\s*doc-test(?::\s*(.*?))?\s*-->\s*$")
FENCE = re.compile(r"^(```+|~~~+)\s*([\w+-]*)")


def blocks(path):
    """-> [{"mark": str|None, "lang", "body", "line"}] for every fenced
    block, with the marker on the line before it (if any)."""
    lines = open(path).read().split("\n")
    out, i, mark = [], 0, None
    while i < len(lines):
        m = MARK.match(lines[i])
        if m:
            mark = (m.group(1) or "run").strip()
            i += 1
            continue
        f = FENCE.match(lines[i])
        if f:
            fence, lang, start = f.group(1), f.group(2), i + 1
            j = start
            while j < len(lines) and not lines[j].startswith(fence):
                j += 1
            assert j < len(lines), "%s:%d: unclosed fence" % (path, i + 1)
            out.append({"mark": mark, "lang": lang, "line": i + 1,
                        "body": "\n".join(lines[start:j]) + "\n"})
            i, mark = j + 1, None
            continue
        if lines[i].strip():
            mark = None  # a marker applies only to the very next block
        i += 1
    return out


def plan(path):
    """-> [(block, expected_exit, cluster, expected_output|None)] to run."""
    steps = []
    for b in blocks(path):
        where = "%s:%d" % (os.path.relpath(path, SRC), b["line"])
        mark = b["mark"]
        if mark == "output":
            assert steps and steps[-1][3] is None, \
                "%s: output block without a run block before it" % where
            steps[-1] = steps[-1][:3] + (b["body"],)
            continue
        if b["lang"] not in ("sh", "bash", "shell"):
            assert mark is None, "%s: marker on a %s block" % (where, b["lang"])
            continue
        assert mark is not None, \
            "%s: sh block without a doc-test marker (run, exit=N, " \
            "cluster or skip (reason))" % where
        if mark.startswith("skip"):
            assert re.match(r"skip\s*\(.+\)", mark), \
                "%s: skip needs a reason: %s" % (where, mark)
            continue
        exit_code, cluster = 0, False
        for part in mark.split(","):
            part = part.strip()
            if part == "run":
                pass
            elif part == "cluster":
                cluster = True
            elif part.startswith("exit="):
                exit_code = int(part[5:])
            else:
                raise AssertionError("%s: unknown marker %r" % (where, part))
        steps.append((dict(b, where=where), exit_code, cluster, None))
    return steps


def line_matches(pattern, line):
    if "..." not in pattern:
        return pattern == line
    rx = ".*".join(re.escape(p) for p in pattern.split("..."))
    return re.fullmatch(rx, line) is not None


def output_matches(expected, actual):
    """Line-by-line match; an expected line `...` matches any lines."""
    exp = [x.rstrip() for x in expected.rstrip("\n").split("\n")]
    act = [x.rstrip() for x in actual.rstrip("\n").split("\n")]
    memo = {}

    def m(i, j):
        if (i, j) in memo:
            return memo[i, j]
        if i == len(exp):
            r = j == len(act)
        elif exp[i] == "...":
            r = any(m(i + 1, k) for k in range(j, len(act) + 1))
        else:
            r = j < len(act) and line_matches(exp[i], act[j]) and m(i + 1, j + 1)
        memo[i, j] = r
        return r
    return m(0, 0)


class Cluster:
    """A kubefake for one guide, with apps/v1 Deployments served."""

    def __init__(self, home):
        from harness import KubeFake
        import json
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from test_deploy_manifests import DEPLOYMENT_CRD
        self.kf = KubeFake().start()
        st, body, _ = self.kf.request(
            "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
            json.dumps(DEPLOYMENT_CRD))
        assert st == 201, (st, body)
        wait_for(lambda: self.kf.request("GET", "/apis/apps/v1")[0] == 200,
                 "apps/v1 served")
        self.env = {"KUBECONFIG": self.kf.info["kubeconfig"], "HOME": home,
                    "AVI_PASSWORD": "doc-test-password"}

    def stop(self):
        self.kf.cleanup()


def run_guide(doc):
    path = os.path.join(SRC, doc)
    steps = plan(path)
    assert len(steps) >= 3, "%s: too few tested blocks (%d)" % (doc, len(steps))
    tmp = tempfile.mkdtemp(prefix="amc-doc-")
    cluster = None
    ran = 0
    try:
        work = os.path.join(tmp, "repo")
        for d in COPY:
            shutil.copytree(os.path.join(SRC, d), os.path.join(work, d),
                            ignore=shutil.ignore_patterns("__pycache__"))
        bindir = os.path.join(tmp, "bin")
        os.makedirs(bindir)
        os.symlink(os.path.abspath(AMC), os.path.join(bindir, "amc"))
        home = os.path.join(tmp, "home")
        os.makedirs(home)
        env = dict(os.environ, PATH=bindir + os.pathsep + os.environ["PATH"],
                   HOME=home, LC_ALL="C.UTF-8")
        env.pop("KUBECONFIG", None)
        for b, want_exit, needs_cluster, want_out in steps:
            e = dict(env)
            if needs_cluster:
                if cluster is None:
                    cluster = Cluster(home)
                e.update(cluster.env)
            p = subprocess.run(["bash", "-e", "-o", "pipefail", "-c",
                                b["body"]], cwd=work, env=e,
                               stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True,
                               timeout=120)
            ran += 1
            assert p.returncode == want_exit, \
                "%s: exit %d, want %d; output:\n%s" % (
                    b["where"], p.returncode, want_exit, p.stdout[-4000:])
            if want_out is not None:
                assert output_matches(want_out, p.stdout), \
                    "%s: output differs from the doc.\n--- doc:\n%s--- " \
                    "actual:\n%s" % (b["where"], want_out, p.stdout[-4000:])
        return ran
    finally:
        if cluster:
            cluster.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def amc_has_offline_tools():
    return subprocess.run([AMC, "translate", "--help"], capture_output=True,
                          timeout=20).returncode == 0


def test_runner_is_not_a_tautology():
    assert output_matches("a\n...\nd\n", "a\nb\nc\nd\n")
    assert output_matches("a\n...\n", "a\n")
    assert not output_matches("a\nd\n", "a\nb\nd\n")
    assert output_matches("x:...: y\n", "x:191: y\n")
    assert not output_matches("x:...: y\n", "x:191: z\n")
    doc = ("<!-- doc-test: exit=2 -->\n```sh\nfalse\n```\n\n"
           "<!-- doc-test: output -->\n```text\nhi\n```\n"
           "<!-- doc-test: skip (no) -->\n```sh\nrm -rf /\n```\n")
    tmp = tempfile.mkdtemp(prefix="amc-doc-self-")
    try:
        p = os.path.join(tmp, "d.md")
        open(p, "w").write(doc)
        s = plan(p)
        assert [(x[1], x[2], x[3]) for x in s] == [(2, False, "hi\n")], s
        open(p, "w").write("```sh\necho unmarked\n```\n")
        try:
            plan(p)
        except AssertionError as e:
            assert "without a doc-test marker" in str(e)
        else:
            raise AssertionError("an unmarked sh block was accepted")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_rule_author_guide():
    assert amc_has_offline_tools(), "%s has no `amc translate`" % AMC
    ran = run_guide(DOCS[0])
    assert ran >= 6, ran


def test_operator_guide():
    ran = run_guide(DOCS[1])
    assert ran >= 3, ran


def doc_metrics():
    text = open(os.path.join(SRC, DOCS[1])).read()
    table = text.split("<!-- metrics-table -->", 1)[1].split("\n\n", 1)[0]
    return set(re.findall(r"^\| `(amc_[a-z0-9_]+)`", table, re.M))


def test_operator_guide_settings_match_amc_run():
    if not amc_has_run():
        print("note: this amc has no `amc run` yet; settings not checked")
        return
    from test_deploy_manifests import IN_CLUSTER_FLAGS
    flags = set(re.findall(r"--([a-z][a-z0-9-]*)", run_help()))
    text = open(os.path.join(SRC, DOCS[1])).read()
    table = text.split("| setting | `amc.yaml` key / flag |", 1)[1]
    table = table.split("\n\n", 1)[0]
    keys = set()
    for row in re.findall(r"^\| [^|]+ \| ([^|]+) \|", table, re.M):
        keys |= set(re.findall(r"`([a-z][a-z0-9-]*)`", row))
    assert len(keys) >= 10, keys
    unknown = sorted(keys - flags)
    assert not unknown, "settings table keys amc run does not know: %s" % \
        unknown
    in_cluster = "lease-name" in flags
    for f in re.findall(r"`--([a-z][a-z0-9-]*)=", text):
        if f in IN_CLUSTER_FLAGS and not in_cluster:
            print("note: --%s not checked (no Kubernetes source yet)" % f)
            continue
        assert f in flags, "the guide mentions --%s, unknown to amc run" % f


def test_operator_guide_metrics_match_amc_run():
    assert len(doc_metrics()) >= 10, doc_metrics()
    if not amc_has_run():
        print("note: this amc has no `amc run` yet; metrics not checked")
        return
    exposed = {m for m in scrape_metrics() if m.startswith("amc_")}
    documented = doc_metrics()
    assert exposed <= documented, "metrics not in the operator guide: %s" \
        % sorted(exposed - documented)
    # A documented metric this run did not expose (e.g. one only the
    # Kubernetes source registers) must at least exist in the runtime.
    sources = ""
    for root, _, files in os.walk(os.path.join(SRC, "runtime")):
        for fn in files:
            if fn.endswith(".c"):
                sources += open(os.path.join(root, fn), errors="replace").read()
    stale = sorted(m for m in documented - exposed
                   if '"%s"' % m not in sources)
    assert not stale, "documented metrics amc does not have: %s" % stale


def scrape_metrics():
    """Starts `amc run` on the examples (dry run) and reads /metrics."""
    import http.client
    tmp = tempfile.mkdtemp(prefix="amc-doc-metrics-")
    portf = os.path.join(tmp, "port")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTRL_")}
    p = subprocess.Popen(
        [AMC, "run", "--source", "fs://" + os.path.join(SRC, "examples"),
         "--dry-run", "--rules", os.path.join(SRC, "rules"),
         "--admin-addr", "127.0.0.1", "--admin-port", "0",
         "--admin-port-file", portf],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmp, "log"), "w"),
        env=env)
    try:
        port = int(wait_for(lambda: os.path.exists(portf) and
                            open(portf).read().strip(), "admin port"))

        def get():
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            c.request("GET", "/metrics")
            r = c.getresponse()
            body = r.read().decode()
            # wait until the initial sync has happened (reconcile counted)
            return body if "amc_reconcile_total{" in body else None
        body = wait_for(get, "metrics after the initial sync")
        names = set()
        for line in body.splitlines():
            m = re.match(r"# TYPE (\S+) (\S+)", line)
            if m:
                names.add(m.group(1))
        return names
    finally:
        p.terminate()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    run_tests([test_runner_is_not_a_tautology,
               test_rule_author_guide,
               test_operator_guide,
               test_operator_guide_settings_match_amc_run,
               test_operator_guide_metrics_match_amc_run])
