"""The first build on a fresh machine: make runs the dependency step
(scripts/deps.sh) before it looks at anything that step installs.

A machine that already has every package cannot show the bug, so the
project is copied into a temporary directory whose scripts/deps.sh is
replaced by one that copies the llhttp sources and headers into a
directory that did not exist before, and LLHTTP_SRC/LLHTTP_INC point there.
A Makefile that plans the build before the dependency step has run fails
with "No rule to make target 'build/llhttp/llhttp.o'"."""

import os
import shutil
import signal
import subprocess

import lp

LLHTTP_SRC = "/usr/share/llhttp"
LLHTTP_INC = "/usr/share/include/llhttp"

# Stands in for scripts/deps.sh: "installs" llhttp where the build looks for
# it and counts its runs. cp -p keeps the packaged files' times, as dpkg does.
FAKE_DEPS = """#!/usr/bin/env bash
set -eu
echo ran >>'{log}'
mkdir -p '{dest}'
cp -rp '{src}' '{dest}/src'
cp -rp '{inc}' '{dest}/include'
"""

# make's own variables would carry the outer build's options (SANITIZE=1,
# the job server) into this one.
MAKE_ENV_DROP = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES", "SANITIZE", "BUILD")


def copy_tree(dst):
    def ignore(directory, names):
        if os.path.abspath(directory) == lp.ROOT:
            return [n for n in names if n in ("build", ".git")]
        return [n for n in names if n == "__pycache__"]
    shutil.copytree(lp.ROOT, dst, ignore=ignore, symlinks=True)


def make(tree, args, timeout=45):
    """Runs make in tree; returns (exit status, output). A make still running
    after `timeout` is ended with its compilers (its own process group)."""
    env = {k: v for k, v in os.environ.items() if k not in MAKE_ENV_DROP}
    proc = subprocess.Popen(["make", "--no-print-directory"] + args, cwd=tree, env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
        return proc.returncode, out.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        raise AssertionError("make %s still running after %ds" % (" ".join(args), timeout))
    finally:
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.wait()


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
    copy_tree(tree)
    with open(os.path.join(tree, "scripts", "deps.sh"), "w") as f:
        f.write(FAKE_DEPS.format(log=log, dest=dest, src=LLHTTP_SRC, inc=LLHTTP_INC))
    where = ["LLHTTP_SRC=" + os.path.join(dest, "src"), "LLHTTP_INC=" + os.path.join(dest, "include")]

    # The path `make test` takes: a unit test binary links every object and llhttp.
    rc, out = make(tree, ["-j2"] + where + ["build/tests/test_timer"])
    assert rc == 0, "first build of a unit test failed:\n" + out
    assert deps_runs(log) == 1, "the dependency step ran %d times" % deps_runs(log)
    assert os.access(os.path.join(tree, "build", "tests", "test_timer"), os.X_OK), out

    # Up to date: neither the dependency step nor a compiler runs again.
    rc, out = make(tree, where + ["build/tests/test_timer"])
    assert rc == 0, out
    assert deps_runs(log) == 1, "the dependency step ran again on an up-to-date tree"
    assert " -c " not in out and " -o " not in out, "an up-to-date tree rebuilt:\n" + out

    # The path `make run` takes, again without llhttp installed; --check loads
    # the example and exits rather than serving it.
    remove_installed(tree, dest)
    rc, out = make(tree, ["-j2"] + where + ["run", "RUN_FLAGS=--check"])
    assert rc == 0, "first make run failed:\n" + out
    assert deps_runs(log) == 2, "the dependency step ran %d times" % deps_runs(log)
    assert out.rstrip().endswith("ok"), "make run did not load the example:\n" + out
