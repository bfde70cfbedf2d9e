"""Lint of the Dockerfile and .dockerignore (no Docker engine runs here, and
hadolint is not in Debian): the properties the image must have, checked
against the repository and the machine's own packages.

- two stages, both on a pinned Debian 12 slim base (tag 12.N-slim or digest);
- no ADD (so no URLs), COPY sources exist and are inside the build context;
- the build stage installs exactly packages that scripts/install-deps.sh
  lists, and they provide every pkg-config module the top-level
  CMakeLists.txt needs plus protoc-c and the protobuf well-known types;
  cmake runs with AMC_TESTS=OFF and AMC_SANITIZE=OFF, and configures from
  the build context alone;
- the runtime stage installs only ca-certificates and shared libraries that
  a build package depends on, and those cover every library the built amc
  links (objdump NEEDED -> dpkg -S);
- it runs as a numeric non-root USER, with ENTRYPOINT ["amc", "run"] on
  PATH, and bakes rules/ at the directory amc uses by default
  (AMC_RULES_DIR in the runtime sources).
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deploy_testlib import BUILD, SRC, run_tests, sh  # noqa: E402

DOCKERFILE = os.path.join(SRC, "Dockerfile")
DOCKERIGNORE = os.path.join(SRC, ".dockerignore")


# --- parsing ----------------------------------------------------------------

def parse(text):
    """-> (global ARG defaults, [stage]) where a stage is
    {"from": str, "name": str|None, "ins": [(INSTR, args)]}."""
    logical, cur = [], ""
    for line in text.splitlines():
        s = line.strip()
        if not cur and (not s or s.startswith("#")):
            continue
        if cur and s.startswith("#"):
            continue  # comment inside a continued instruction
        if s.endswith("\\"):
            cur += s[:-1] + " "
            continue
        logical.append(cur + s)
        cur = ""
    assert not cur, "Dockerfile ends inside a continued line"
    args, stages = {}, []
    for ln in logical:
        instr, _, rest = ln.partition(" ")
        instr = instr.upper()
        rest = rest.strip()
        if instr == "FROM":
            m = re.match(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$",
                         rest, re.I)
            assert m, "bad FROM: %s" % ln
            stages.append({"from": m.group(1), "name": m.group(2),
                           "ins": []})
        elif not stages:
            assert instr == "ARG", "only ARG may precede FROM: %s" % ln
            k, _, v = rest.partition("=")
            args[k] = v
        else:
            stages[-1]["ins"].append((instr, rest))
    return args, stages


def expand(s, args):
    return re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)),
                  s)


def apt_packages(stage):
    """Packages named by `apt-get install` in a stage's RUN instructions."""
    pkgs = []
    for instr, rest in stage["ins"]:
        if instr != "RUN":
            continue
        for seg in re.split(r"&&|;", rest):
            words = shlex.split(seg)
            if "apt-get" in words and "install" in words:
                assert "--no-install-recommends" in words, seg
                i = words.index("install")
                pkgs += [w for w in words[i + 1:] if not w.startswith("-")]
    return pkgs


def copies(stage):
    """[(from_stage|None, [sources], dest)] of a stage's COPY/ADD."""
    out = []
    for instr, rest in stage["ins"]:
        if instr not in ("COPY", "ADD"):
            continue
        words = shlex.split(rest)
        frm = None
        while words and words[0].startswith("--"):
            if words[0].startswith("--from="):
                frm = words[0][len("--from="):]
            words = words[1:]
        out.append((frm, words[:-1], words[-1]))
    return out


def dockerignore_patterns():
    pats = []
    with open(DOCKERIGNORE) as f:
        for line in f:
            s = line.strip()
            if not s or s.startswith("#"):
                continue
            neg = s.startswith("!")
            s = s[1:] if neg else s
            pats.append((neg, s.strip("/")))
    return pats


def glob_re(pat):
    out, i = "", 0
    while i < len(pat):
        if pat.startswith("**/", i):
            out += "(?:.*/)?"
            i += 3
        elif pat.startswith("**", i):
            out += ".*"
            i += 2
        elif pat[i] == "*":
            out += "[^/]*"
            i += 1
        elif pat[i] == "?":
            out += "[^/]"
            i += 1
        else:
            out += re.escape(pat[i])
            i += 1
    return re.compile(out + "$")


def in_context(path, pats):
    """Docker's rule: the last pattern matching the path or one of its
    parent directories decides; `!` re-includes."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    included = True
    for neg, p in pats:
        r = glob_re(p)
        if any(r.match(x) for x in prefixes):
            included = neg
    return included


def dpkg_owner(path):
    """The package owning `path` (tries the merged-/usr aliases too)."""
    cands = [path, os.path.realpath(path)]
    for c in list(cands):
        if c.startswith("/usr/lib/"):
            cands.append(c[len("/usr"):])
        elif c.startswith("/lib/"):
            cands.append("/usr" + c)
    err = ""
    for c in cands:
        p = subprocess.run(["dpkg", "-S", c], capture_output=True, text=True)
        if p.returncode == 0:
            return p.stdout.split(":")[0].split(",")[0].strip()
        err = p.stderr
    raise AssertionError("no package owns %s: %s" % (path, err))


def dpkg_depends(pkg):
    p = sh(["dpkg-query", "-W", "-f=${Depends}", pkg])
    return {re.split(r"[\s(:]", d.strip())[0]
            for alt in p.stdout.split(",") for d in alt.split("|") if d.strip()}


def install_deps_packages():
    text = open(os.path.join(SRC, "scripts", "install-deps.sh")).read()
    m = re.search(r"PACKAGES=\((.*?)\n\)", text, re.S)
    assert m, "PACKAGES=( ... ) not found in install-deps.sh"
    body = re.sub(r"#[^\n]*", "", m.group(1))
    return set(body.split())


def load():
    return parse(open(DOCKERFILE).read())


def stages_by_role():
    args, stages = load()
    assert len(stages) >= 2, "multi-stage build expected"
    return args, stages[0], stages[-1]


# --- tests ------------------------------------------------------------------

def test_parser_is_not_a_tautology():
    """The checks below fail on a bad Dockerfile (guards the parser)."""
    bad = ("ARG B=debian:latest\nFROM ${B}\n"
           "ADD https://x.invalid/a.tgz /a\nUSER root\n"
           "RUN apt-get install -y curl\n")
    args, stages = parse(bad)
    assert len(stages) == 1
    assert expand(stages[0]["from"], args) == "debian:latest"
    assert not PINNED.match(expand(stages[0]["from"], args))
    assert copies(stages[0])[0][1] == ["https://x.invalid/a.tgz"]
    try:
        apt_packages(stages[0])
    except AssertionError:
        pass
    else:
        raise AssertionError("missing --no-install-recommends not caught")
    pats = [(False, "*"), (True, "runtime")]
    assert in_context("runtime/main.c", pats)
    assert not in_context("build/amc", pats)
    assert not in_context("runtime/x.pyc", pats + [(False, "**/*.pyc")])


PINNED = re.compile(r"^debian:12\.\d+-slim$|^debian(:12[^@]*)?@sha256:[0-9a-f]{64}$")


def test_bases_are_pinned_debian12_slim():
    args, stages = load()
    for st in stages:
        base = expand(st["from"], args)
        if base in [s["name"] for s in stages]:
            continue
        assert PINNED.match(base), "base %r is not a pinned debian 12 slim" % base
        assert st["name"], "every stage is named (FROM ... AS name)"


def test_no_add_and_copy_sources_in_context():
    args, stages = load()
    pats = dockerignore_patterns()
    names = [s["name"] for s in stages]
    for st in stages:
        for instr, rest in st["ins"]:
            assert instr != "ADD", "use COPY, not ADD: ADD %s" % rest
            if instr == "RUN":
                assert not re.search(r"\b(curl|wget)\b", rest), \
                    "no downloads in RUN: %s" % rest
        for frm, srcs, dest in copies(st):
            if frm:
                assert frm in names, "COPY --from=%s: no such stage" % frm
                continue
            for s in srcs:
                assert not re.match(r"^\w+://", s), "URL in COPY: %s" % s
                path = os.path.join(SRC, s)
                assert os.path.exists(path), "COPY source %s missing" % s
                assert in_context(s, pats), \
                    "COPY source %s is excluded by .dockerignore" % s
    # The context must not carry build trees, git data or tests.
    for p in ("build/amc", ".git/HEAD", "tests/unit/test_json.c",
              "runtime/__pycache__/x.pyc"):
        assert not in_context(p, pats), "%s would be in the context" % p


def test_build_stage_packages():
    args, build, _ = stages_by_role()
    pkgs = apt_packages(build)
    deps = install_deps_packages()
    extra = [p for p in pkgs if p not in deps]
    assert not extra, "build packages not in install-deps.sh: %s" % extra
    # Every pkg-config module of the top-level CMakeLists.txt, protoc-c and
    # the well-known .proto files come from a package the stage installs.
    cm = open(os.path.join(SRC, "CMakeLists.txt")).read()
    mods = re.findall(r"pkg_check_modules\(\w+\s+REQUIRED\s+IMPORTED_TARGET"
                      r"\s+([\w.+-]+)\)", cm)
    assert len(mods) >= 5, mods
    need = {}
    for m in mods:
        d = sh(["pkg-config", "--variable=pcfiledir", m]).stdout.strip()
        need["pkg-config " + m] = dpkg_owner(os.path.realpath(
            os.path.join(d, m + ".pc")))
    need["protoc-c"] = dpkg_owner(os.path.realpath(shutil.which("protoc-c")))
    need["google/protobuf/any.proto"] = dpkg_owner(
        "/usr/include/google/protobuf/any.proto")
    for what, pkg in need.items():
        assert pkg in pkgs, "%s needs package %s in the build stage" % (
            what, pkg)
    for p in ("cmake", "pkg-config", "build-essential"):
        assert p in pkgs, p


def cmake_configure_words(build):
    for instr, rest in build["ins"]:
        if instr != "RUN":
            continue
        for seg in rest.split("&&"):
            w = shlex.split(seg)
            if w[:1] == ["cmake"] and "-S" in w:
                return w
    raise AssertionError("no `cmake -S` configure step in the build stage")


def test_build_stage_cmake_configures_from_context():
    args, build, _ = stages_by_role()
    words = cmake_configure_words(build)
    assert "-DAMC_TESTS=OFF" in words and "-DAMC_SANITIZE=OFF" in words, words
    steps = [rest for i, rest in build["ins"] if i == "RUN"]
    assert any("--target amc" in r for r in steps), "build only amc"
    # Lay out exactly what the build stage copies, then run its configure.
    pats = dockerignore_patterns()
    tmp = tempfile.mkdtemp(prefix="amc-docker-ctx-")
    try:
        for frm, srcs, dest in copies(build):
            assert frm is None
            for s in srcs:
                src = os.path.join(SRC, s)
                dst = os.path.join(tmp, dest if dest not in ("./", ".")
                                   else os.path.basename(s.rstrip("/")))
                if os.path.isdir(src):
                    for root, dirs, files in os.walk(src):
                        for fn in files:
                            rel = os.path.relpath(os.path.join(root, fn), SRC)
                            if not in_context(rel, pats):
                                continue
                            out = os.path.join(
                                dst, os.path.relpath(os.path.join(root, fn),
                                                     src))
                            os.makedirs(os.path.dirname(out), exist_ok=True)
                            shutil.copy2(os.path.join(root, fn), out)
                else:
                    os.makedirs(os.path.dirname(dst) or tmp, exist_ok=True)
                    shutil.copy2(src, dst)
        p = subprocess.run(words, cwd=tmp, capture_output=True, text=True,
                           timeout=120)
        assert p.returncode == 0, "configure from the build context failed:" \
            "\n%s\n%s" % (p.stdout[-3000:], p.stderr[-3000:])
        cache = open(os.path.join(tmp, "build", "CMakeCache.txt")).read()
        assert "AMC_TESTS:BOOL=OFF" in cache and "AMC_SANITIZE:BOOL=OFF" in cache
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_runtime_stage_packages_cover_needed_libs():
    args, build, runtime = stages_by_role()
    rpkgs = apt_packages(runtime)
    bpkgs = apt_packages(build)
    # Runtime libraries a build package depends on (e.g. libuv1-dev -> libuv1).
    libdeps = set()
    for b in bpkgs:
        libdeps |= dpkg_depends(b)
    for p in rpkgs:
        assert p == "ca-certificates" or p in libdeps, \
            "runtime package %s is neither a library of a build package " \
            "nor ca-certificates" % p
    assert "ca-certificates" in rpkgs, "amc verifies TLS: ca-certificates"
    assert not [p for p in rpkgs if p.endswith("-dev")], rpkgs
    # Every library the built amc links comes from a runtime package (or
    # from the base image: libc6).
    amc = os.path.join(BUILD, "amc")
    needed = re.findall(r"NEEDED\s+(\S+)",
                        sh(["objdump", "-p", amc]).stdout)
    assert needed, "no NEEDED entries in %s" % amc
    ldd = sh(["ldd", amc]).stdout
    paths = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd, re.M))
    base = {"libc6", "libgcc-s1"}
    for lib in needed:
        assert lib in paths, "ldd does not resolve %s" % lib
        pkg = dpkg_owner(paths[lib])
        assert pkg in rpkgs or pkg in base, \
            "amc links %s (package %s), missing from the runtime stage" % (
                lib, pkg)


def test_runtime_user_entrypoint_rules():
    args, build, runtime = stages_by_role()
    users = [rest for i, rest in runtime["ins"] if i == "USER"]
    assert users, "the runtime stage sets USER"
    m = re.match(r"^(\d+)(?::(\d+))?$", users[-1])
    assert m, "USER must be numeric (uid[:gid]) for runAsNonRoot: %s" % users[-1]
    assert int(m.group(1)) != 0 and (m.group(2) is None or int(m.group(2)) != 0)
    ep = [rest for i, rest in runtime["ins"] if i == "ENTRYPOINT"]
    assert ep and ep[-1].replace(" ", "") == '["amc","run"]', ep
    cps = copies(runtime)
    binary = [d for f, s, d in cps if f == build["name"]
              and s == ["/src/build/amc"]]
    assert binary == ["/usr/bin/amc"], "amc copied to /usr/bin: %s" % cps
    rules = [d for f, s, d in cps if f is None and s == ["rules/"]]
    assert len(rules) == 1, "rules/ baked into the runtime stage"
    dest = rules[0].rstrip("/")
    assert os.path.exists(os.path.join(SRC, "rules", "gateway.lua"))
    # The baked path is the default rules directory of the runtime.
    defs = []
    for root, _, files in os.walk(os.path.join(SRC, "runtime")):
        for fn in files:
            if fn.endswith((".h", ".c")):
                t = open(os.path.join(root, fn), errors="replace").read()
                defs += re.findall(r'#define AMC_RULES_DIR "([^"]+)"', t)
    assert defs, "no #define AMC_RULES_DIR in runtime/"
    assert set(defs) == {dest}, \
        "AMC_RULES_DIR %s != baked rules path %s" % (defs, dest)
    assert dest == "/usr/share/amc/rules", dest
    # amc prefers ./rules when it exists: the working directory must not
    # have one, or it would shadow the baked rules.
    wd = [rest for i, rest in runtime["ins"] if i == "WORKDIR"]
    assert wd and wd[-1] == "/", "runtime WORKDIR / expected: %s" % wd
    hc = [rest for i, rest in runtime["ins"] if i == "HEALTHCHECK"]
    for h in hc:
        assert "/healthz" in h or h.upper() == "NONE", h
    ex = [rest for i, rest in runtime["ins"] if i == "EXPOSE"]
    assert ex, "EXPOSE the admin port"


if __name__ == "__main__":
    run_tests([test_parser_is_not_a_tautology,
               test_bases_are_pinned_debian12_slim,
               test_no_add_and_copy_sources_in_context,
               test_build_stage_packages,
               test_build_stage_cmake_configures_from_context,
               test_runtime_stage_packages_cover_needed_libs,
               test_runtime_user_entrypoint_rules])
