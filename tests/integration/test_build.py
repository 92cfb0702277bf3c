"""The tooling a green run rests on: make and tests/run.sh.

The first build on a fresh machine: make runs the dependency step
(scripts/deps.sh) before it looks at anything that step installs.

A machine that already has every package cannot show the bug, so the
project is copied into a temporary directory whose scripts/deps.sh is
replaced by one that copies the llhttp sources and headers into a
directory that did not exist before, and LLHTTP_SRC/LLHTTP_INC point there.
A Makefile that plans the build before the dependency step has run fails
with "No rule to make target 'build/llhttp/llhttp.o'". pkg-config, too,
finds luajit and check only in a directory that step creates, so flags it
gave before the step ran would be empty and the build would fail.

tests/run.sh fails loudly on a run that proves nothing; those tests run it
against a BUILD directory of stand-in unit binaries (shell scripts that
print a Check summary)."""

import os
import shutil
import signal
import subprocess

import lp

LLHTTP_SRC = "/usr/share/llhttp"
LLHTTP_INC = "/usr/share/include/llhttp"

# pkg-config modules the build asks for, and what they require.
PC_MODULES = ("luajit", "libpcre2-8", "libcares", "openssl", "libssl", "libcrypto", "check", "libsubunit")

# Stands in for scripts/deps.sh: "installs" llhttp and the pkg-config files
# where the build looks for them and counts its runs. cp -p keeps the
# packaged files' times, as dpkg does.
FAKE_DEPS = """#!/usr/bin/env bash
set -eu
echo ran >>'{log}'
mkdir -p '{dest}/pkgconfig'
cp -rp '{src}' '{dest}/src'
cp -rp '{inc}' '{dest}/include'
cp -p {pc_files} '{dest}/pkgconfig/'
"""

# make's own variables would carry the outer build's options (SANITIZE=1,
# the job server) into this one.
MAKE_ENV_DROP = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "SANITIZE", "BUILD",
                 "PKG_CONFIG_PATH")


def copy_tree(dst):
    def ignore(directory, names):
        if os.path.abspath(directory) == lp.ROOT:
            return [n for n in names if n in ("build", ".git")]
        return [n for n in names if n == "__pycache__"]
    shutil.copytree(lp.ROOT, dst, ignore=ignore, symlinks=True)


def run_bounded(argv, cwd, env, timeout, stdout=subprocess.PIPE):
    """Runs argv to completion; returns (exit status, output, or None when
    stdout is a file). A run still going after `timeout` is ended with
    everything it started (its own process group) and fails the test."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL, stdout=stdout,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out.decode("utf-8", "replace") if out is not None else None
    except subprocess.TimeoutExpired:
        raise AssertionError("%s still running after %ds" % (" ".join(argv), timeout))
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


def make(tree, args, env_add=None, timeout=45):
    env = {k: v for k, v in os.environ.items() if k not in MAKE_ENV_DROP}
    env.update(env_add or {})
    return run_bounded(["make", "--no-print-directory"] + args, tree, env, timeout)


def deps_runs(log):
    if not os.path.exists(log):
        return 0
    with open(log) as f:
        return len(f.read().split())


def remove_installed(tree, dest):
    """Back to a machine without llhttp: no installed copy, no dependency
    stamp, no compiled llhttp objects."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.rmtree(os.path.join(tree, "build", "llhttp"), ignore_errors=True)
    for name in os.listdir(os.path.join(tree, "build")):
        if name.startswith(".deps"):
            os.remove(os.path.join(tree, "build", name))


def test_first_build_runs_the_dependency_step_first():
    assert os.path.isfile(os.path.join(LLHTTP_SRC, "llhttp.c")), "no llhttp sources in " + LLHTTP_SRC
    assert os.path.isfile(os.path.join(LLHTTP_INC, "llhttp.h")), "no llhttp.h in " + LLHTTP_INC
    tmp = lp.make_tmpdir()
    tree = os.path.join(tmp, "src")
    dest = os.path.join(tmp, "installed")   # appears only when the deps step runs
    log = os.path.join(tmp, "deps.log")
    pc_files = []
    for module in PC_MODULES:
        r = subprocess.run(["pkg-config", "--path", module], stdout=subprocess.PIPE, check=True)
        pc_files.append("'%s'" % r.stdout.decode().strip())
    copy_tree(tree)
    with open(os.path.join(tree, "scripts", "deps.sh"), "w") as f:
        f.write(FAKE_DEPS.format(log=log, dest=dest, src=LLHTTP_SRC, inc=LLHTTP_INC,
                                 pc_files=" ".join(pc_files)))
    where = ["LLHTTP_SRC=" + os.path.join(dest, "src"), "LLHTTP_INC=" + os.path.join(dest, "include")]
    # Only the directory the dependency step creates: not the system's.
    pc_env = {"PKG_CONFIG_LIBDIR": os.path.join(dest, "pkgconfig")}

    # The path `make test` takes: a unit test binary links every object and llhttp.
    rc, out = make(tree, ["-j2"] + where + ["build/tests/test_timer"], pc_env)
    assert rc == 0, "first build of a unit test failed:\n" + out
    assert deps_runs(log) == 1, "the dependency step ran %d times" % deps_runs(log)
    assert os.access(os.path.join(tree, "build", "tests", "test_timer"), os.X_OK), out

    # Up to date: neither the dependency step nor a compiler runs again.
    rc, out = make(tree, where + ["build/tests/test_timer"], pc_env)
    assert rc == 0, out
    assert deps_runs(log) == 1, "the dependency step ran again on an up-to-date tree"
    assert " -c " not in out and " -o " not in out, "an up-to-date tree rebuilt:\n" + out

    # The path `make run` takes, again without llhttp installed; --check loads
    # the example and exits rather than serving it.
    remove_installed(tree, dest)
    rc, out = make(tree, ["-j2"] + where + ["run", "RUN_FLAGS=--check"], pc_env)
    assert rc == 0, "first make run failed:\n" + out
    assert deps_runs(log) == 2, "the dependency step ran %d times" % deps_runs(log)
    assert out.rstrip().endswith("ok"), "make run did not load the example:\n" + out


# --------------------------------------------------------------------------
# tests/run.sh

UNIT_NAMES = sorted(n[:-2] for n in os.listdir(lp.repo_path("tests", "unit"))
                    if n.startswith("test_") and n.endswith(".c"))

FAKE_UNIT = """#!/bin/sh
echo "Running suite(s): {name}"
echo "marker-{name}-before-integration"
echo "100%: Checks: {checks}, Failures: 0, Errors: 0"
exit {rc}
"""


def fake_build(checks=40, exit_status=None):
    """A BUILD directory with one stand-in per unit test source, each
    reporting `checks` passing tests; exit_status maps a name to its exit."""
    build = lp.make_tmpdir()
    os.mkdir(os.path.join(build, "tests"))
    for name in UNIT_NAMES:
        path = os.path.join(build, "tests", name)
        with open(path, "w") as f:
            f.write(FAKE_UNIT.format(name=name, checks=checks, rc=(exit_status or {}).get(name, 0)))
        os.chmod(path, 0o755)
    return build


def run_sh(env, stdout=subprocess.PIPE, timeout=40):
    full = {k: v for k, v in os.environ.items()
            if k not in ("ONLY", "FILTER", "MIN_UNIT", "MIN_INTEGRATION")}
    full.update(env)
    return run_bounded(["bash", lp.repo_path("tests", "run.sh")], lp.ROOT, full, timeout, stdout)


def last_line(out):
    return out.rstrip("\n").split("\n")[-1]


def test_run_sh_unknown_only_fails():
    rc, out = run_sh({"ONLY": "units"})
    assert rc not in (0, None), "ONLY=units exited %r:\n%s" % (rc, out)
    assert "unknown ONLY=units" in out, out
    assert last_line(out) == "0 passed, 1 failed", out


def test_run_sh_counts_a_unit_binary_exit_status():
    # A clean summary and then a non-zero exit: a crash or a sanitizer's
    # leak report after the tests ran.
    victim = UNIT_NAMES[0]
    rc, out = run_sh({"ONLY": "unit", "BUILD": fake_build(exit_status={victim: 3})})
    assert rc not in (0, None), "exit status 3 was ignored:\n" + out
    assert "[%s] exited with status 3" % victim in out, out
    assert last_line(out) == "%d passed, 1 failed" % (40 * len(UNIT_NAMES)), out


def test_run_sh_fails_below_its_floor():
    rc, out = run_sh({"ONLY": "unit", "BUILD": fake_build(checks=1)})
    assert rc not in (0, None), "%d unit tests were enough:\n%s" % (len(UNIT_NAMES), out)
    assert "unit: only %d tests ran" % len(UNIT_NAMES) in out, out
    # The same stand-ins above the floor pass: the floor is what failed.
    rc, out = run_sh({"ONLY": "unit", "BUILD": fake_build(checks=1),
                      "MIN_UNIT": str(len(UNIT_NAMES))})
    assert rc == 0, out


def test_run_sh_fails_a_filter_that_matches_nothing():
    rc, out = run_sh({"ONLY": "integration", "FILTER": "no_such_test_anywhere"})
    assert rc not in (0, None), "a FILTER that ran nothing passed:\n" + out
    assert "only 0 tests ran" in out, out


def test_run_sh_output_survives_redirection_to_one_file():
    # `make test >log 2>&1`: stdout and stderr share one open file; nothing
    # the runner prints may truncate or overwrite it.
    log = os.path.join(lp.make_tmpdir(), "log")
    with open(log, "w") as f:
        rc, _ = run_sh({"BUILD": fake_build(),
                        "FILTER": "test_cli.py::test_check_good_script_prints_ok"}, stdout=f)
    with open(log) as f:
        text = f.read()
    for name in UNIT_NAMES:
        assert "marker-%s-before-integration" % name in text, "lost unit output:\n" + text
    assert "PASS test_cli.py::test_check_good_script_prints_ok" in text, text
    assert last_line(text) == "%d passed, 0 failed" % (40 * len(UNIT_NAMES) + 1), text
    assert rc == 0, text


def test_fuzz_replay_fails_without_its_inputs():
    # Run from a directory without tests/fuzz: nothing to replay is a failure.
    binary = os.path.join(lp.ROOT, os.environ.get("BUILD", "build"), "tests", "test_fuzz_replay")
    assert os.access(binary, os.X_OK), binary + " is not built"
    rc, out = run_bounded([binary], lp.make_tmpdir(), dict(os.environ, CK_FORK="yes"), 30)
    assert rc not in (0, None), "the replay passed with no inputs:\n" + out
    assert "cannot read tests/fuzz/corpus/client" in out, out


# --------------------------------------------------------------------------
# .ci/run, with a stand-in make on PATH

FAKE_MAKE = """#!/bin/sh
# "make test" fails one test and make reports it after the total;
# "make test SANITIZE=1" {asan}
case "$*" in
    "test")
        echo "5 passed, 1 failed"
        echo "make: *** [Makefile:1: test] Error 1"
        exit 2 ;;
    "test SANITIZE=1")
        {asan_cmd} ;;
    *)
        echo "unexpected make $*"
        exit 9 ;;
esac
"""


def ci_run(asan, asan_cmd):
    bindir = lp.make_tmpdir()
    with open(os.path.join(bindir, "make"), "w") as f:
        f.write(FAKE_MAKE.format(asan=asan, asan_cmd=asan_cmd))
    os.chmod(os.path.join(bindir, "make"), 0o755)
    env = dict(os.environ, PATH=bindir + os.pathsep + os.environ["PATH"])
    return run_bounded(["bash", lp.repo_path(".ci", "run")], lp.ROOT, env, 30)


def test_ci_run_totals_both_runs_and_fails_if_either_fails():
    rc, out = ci_run("passes", 'echo "7 passed, 0 failed"; exit 0')
    assert rc not in (0, None), "a failed make test passed CI:\n" + out
    assert "ci: make test SANITIZE=1: exit 0" in out, "the sanitizer run did not run:\n" + out
    assert last_line(out) == "12 passed, 1 failed", out
    # A sanitizer build that fails before any test ran counts too.
    rc, out = ci_run("does not build", 'echo "cc: error"; exit 2')
    assert rc not in (0, None), out
    assert last_line(out) == "5 passed, 2 failed", out
