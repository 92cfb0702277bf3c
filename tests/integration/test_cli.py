"""SPEC §1: the command line, --check, exit statuses, LUAPROXY_* variables."""

import os
import re
import shutil
import socket
import subprocess

import lp

GOOD = 'function on_get(req) return 200, "hi\\n" end\n'


def one_line(text):
    lines = [l for l in text.strip().split("\n") if l.strip()]
    assert len(lines) == 1, "expected one line on stderr, got %d: %r" % (len(lines), text)
    return lines[0]


def test_check_good_script_prints_ok():
    path = lp.write_script(GOOD, name="good.lua")
    r = lp.run_cli(["--check", path])
    assert r.returncode == 0, r
    assert r.stdout.strip() == "ok", r


def test_check_short_option():
    path = lp.write_script(GOOD, name="good.lua")
    r = lp.run_cli(["-t", path])
    assert r.returncode == 0, r
    assert r.stdout.strip() == "ok", r


def test_check_syntax_error_names_file_and_line():
    path = lp.write_script("-- a comment\nlocal x = 1\nx = = 2\n", name="broken.lua")
    r = lp.run_cli(["--check", path])
    assert r.returncode == 2, r
    line = one_line(r.stderr)
    assert "broken.lua:3" in line, "stderr does not name broken.lua:3: %r" % line
    assert "ok" != r.stdout.strip(), r


def test_check_runtime_error_at_top_level():
    path = lp.write_script("local t = {}\nlocal y = t.missing.field\n", name="rt.lua")
    r = lp.run_cli(["--check", path])
    assert r.returncode == 2, r
    line = one_line(r.stderr)
    assert "rt.lua:2" in line, "stderr does not name rt.lua:2: %r" % line


def test_check_error_call_at_top_level():
    path = lp.write_script('\n\nerror("no config here")\n', name="err.lua")
    r = lp.run_cli(["--check", path])
    assert r.returncode == 2, r
    line = one_line(r.stderr)
    assert "err.lua:3" in line and "no config here" in line, line


def test_start_with_script_error_exits_2():
    path = lp.write_script("function on_get(req)\n  return 200\n", name="unclosed.lua")
    r = lp.run_cli(["--listen", "127.0.0.1:%d" % lp.free_port(), "-w", "1", path])
    assert r.returncode == 2, r
    assert "unclosed.lua" in r.stderr, r


def bad_option(args, needle):
    """Starts for real (no --check): a bad option must stop it with status 2
    and one line naming the option, before anything listens."""
    path = lp.write_script(GOOD, name="good.lua")
    r = lp.run_cli(list(args) + [path])
    assert r.returncode is not None, "luaproxy started instead of refusing %r" % (args,)
    assert r.returncode == 2, r
    line = one_line(r.stderr)
    assert needle in line, "stderr does not name %r: %r" % (needle, line)


def test_unknown_option():
    bad_option(["--listen", "127.0.0.1:%d" % lp.free_port(), "--frobnicate"], "--frobnicate")


def test_workers_zero():
    bad_option(["--listen", "127.0.0.1:%d" % lp.free_port(), "--workers", "0"], "workers")


def test_listen_bad_port():
    bad_option(["--listen", "nohost:99999"], "listen")


def test_listen_without_port():
    bad_option(["--listen", "127.0.0.1"], "listen")


def test_size_bad_unit():
    bad_option(["--listen", "127.0.0.1:%d" % lp.free_port(), "--max-body-size", "16q"],
               "max-body-size")


def test_size_overflow():
    bad_option(["--listen", "127.0.0.1:%d" % lp.free_port(), "--max-body-size",
                "99999999999999999999999"], "max-body-size")


def test_size_overflow_with_unit():
    bad_option(["--listen", "127.0.0.1:%d" % lp.free_port(), "--shm-size", "99999999999999g"],
               "shm-size")


def test_duration_bad():
    bad_option(["--listen", "127.0.0.1:%d" % lp.free_port(), "--idle-timeout", "soon"],
               "idle-timeout")


def test_bad_log_level():
    bad_option(["--listen", "127.0.0.1:%d" % lp.free_port(), "--log-level", "loud"], "log-level")


def test_option_missing_value():
    path = lp.write_script(GOOD, name="good.lua")
    r = lp.run_cli([path, "--listen"])
    assert r.returncode == 2, r
    assert "listen" in one_line(r.stderr), r


def test_missing_script_file():
    missing = "/nonexistent-dir/none.lua"
    r = lp.run_cli(["--listen", "127.0.0.1:%d" % lp.free_port(), missing])
    assert r.returncode == 2, r
    assert missing in one_line(r.stderr), r


def test_no_script_given():
    r = lp.run_cli(["--listen", "127.0.0.1:%d" % lp.free_port()])
    assert r.returncode == 2, r
    one_line(r.stderr)


def test_help():
    for opt in ("--help", "-h"):
        r = lp.run_cli([opt])
        assert r.returncode == 0, r
        assert "usage" in r.stdout.lower(), r
        for name in ("--listen", "--workers", "--max-body-size", "--check"):
            assert name in r.stdout, "%s missing from %s output" % (name, opt)


def test_version():
    for opt in ("--version", "-V"):
        r = lp.run_cli([opt])
        assert r.returncode == 0, r
        assert re.search(r"\d+\.\d+", r.stdout), "no version number in %r" % r.stdout


def test_env_bad_value_names_variable():
    path = lp.write_script(GOOD, name="good.lua")
    r = lp.run_cli(["--listen", "127.0.0.1:%d" % lp.free_port(), path],
                   env={"LUAPROXY_MAX_BODY_SIZE": "lots"})
    assert r.returncode == 2, r
    assert "LUAPROXY_MAX_BODY_SIZE" in one_line(r.stderr), r


def test_env_listen():
    port = lp.free_port()
    with lp.Proxy(GOOD, listen=False, port=port, env={"LUAPROXY_LISTEN": "127.0.0.1:%d" % port}) as p:
        r = lp.get(p.port, "/")
        assert r.status == 200 and r.body == b"hi\n", r


def test_command_line_beats_environment():
    env_port = lp.free_port()
    with lp.Proxy(GOOD, env={"LUAPROXY_LISTEN": "127.0.0.1:%d" % env_port}) as p:
        lp.expect(lp.get(p.port, "/"), 200)
        assert not lp.port_accepts(env_port), "the environment's address is listening too"


def test_env_option_applies():
    # LUAPROXY_MAX_BODY_SIZE=1k must be in force: a 2 KiB body gets 413.
    with lp.Proxy('function on_post(req) return 200, #req.body end',
                  env={"LUAPROXY_MAX_BODY_SIZE": "1k"}) as p:
        lp.expect(lp.post(p.port, "/", b"x" * 512), 200)
        r = lp.post(p.port, "/", b"x" * 2048)
        assert r.status == 413, r


def test_address_in_use_exits_1():
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        path = lp.write_script(GOOD, name="good.lua")
        r = lp.run_cli(["--listen", "127.0.0.1:%d" % port, "-w", "1", path])
        assert r.returncode == 1, r
        line = one_line(r.stderr)
        assert "127.0.0.1:%d" % port in line and "in use" in line, "stderr does not name the address in use: %r" % r
    finally:
        s.close()


# An unusable path given in the configuration is a configuration error:
# status 2 and one line naming the option, the path and the reason, before
# anything listens (run_cli reports a server that started as returncode None).

def path_refused(args, needles, env=None):
    path = lp.write_script(GOOD, name="good.lua")
    port = lp.free_port()
    r = lp.run_cli(["--listen", "127.0.0.1:%d" % port, "-w", "1"] + list(args) + [path], env=env)
    assert r.returncode is not None, "luaproxy started with %r" % (args,)
    assert r.returncode == 2, r
    line = one_line(r.stderr)
    for n in needles:
        assert n in line, "stderr does not name %r: %r" % (n, line)
    return line


def test_access_log_in_missing_directory_exits_2():
    bad = "/nonexistent-dir/access.log"
    path_refused(["--access-log", bad], ["--access-log", bad, "No such file or directory"])


def test_access_log_that_is_a_directory_exits_2():
    d = lp.make_tmpdir()
    path_refused(["--access-log", d], ["--access-log", d, "Is a directory"])


def test_access_log_from_environment_names_the_variable():
    bad = "/nonexistent-dir/access.log"
    path_refused([], ["LUAPROXY_ACCESS_LOG", bad], env={"LUAPROXY_ACCESS_LOG": bad})


def test_pid_file_in_missing_directory_exits_2():
    bad = "/nonexistent-dir/luaproxy.pid"
    path_refused(["--pid-file", bad], ["--pid-file", bad, "No such file or directory"])


def test_pid_file_that_is_a_directory_exits_2():
    d = lp.make_tmpdir()
    path_refused(["--pid-file", d], ["--pid-file", d, "Is a directory"])


def test_pid_file_from_environment_names_the_variable():
    bad = "/nonexistent-dir/luaproxy.pid"
    path_refused([], ["LUAPROXY_PID_FILE", bad], env={"LUAPROXY_PID_FILE": bad})


def test_failed_second_start_leaves_the_running_pid_file_alone():
    # The pid file is checked early but written only once the listeners
    # work: an instance refused on a busy port must not overwrite it, nor
    # leave a new one behind.
    with lp.Proxy(GOOD) as p:
        path = lp.write_script(GOOD, name="good.lua")
        r = lp.run_cli(["--listen", "127.0.0.1:%d" % p.port, "--pid-file", p.pid_file, "-w", "1", path])
        assert r.returncode == 1, r
        with open(p.pid_file) as f:
            assert f.read() == "%d\n" % p.pid
        fresh = lp.make_tmpdir() + "/new.pid"
        r = lp.run_cli(["--listen", "127.0.0.1:%d" % p.port, "--pid-file", fresh, "-w", "1", path])
        assert r.returncode == 1, r
        assert not os.path.exists(fresh), "a failed start left %s behind" % fresh


def run_unprivileged(args, timeout=5.0):
    """luaproxy run as user nobody (the suite runs as root), with a script in
    a directory that user can read."""
    setpriv = shutil.which("setpriv")
    assert setpriv, "setpriv (util-linux) is needed to drop privileges"
    d = lp.make_tmpdir()
    os.chmod(d, 0o755)
    script = lp.write_script(GOOD, directory=d)
    os.chmod(script, 0o644)
    proc = subprocess.run([setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", lp.binary()]
                          + list(args) + [script], stdin=subprocess.DEVNULL, capture_output=True,
                          timeout=timeout, cwd="/", env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                          start_new_session=True)
    return lp.CliResult(proc.returncode, proc.stdout.decode(), proc.stderr.decode())


def test_privileged_port_says_what_it_needs():
    # bind() checks the privilege before whether the port is free, so any
    # port below 1024 gives EACCES to an unprivileged user.
    r = run_unprivileged(["-l", "127.0.0.1:81", "-w", "1"])
    assert r.returncode == 1, r
    line = one_line(r.stderr)
    for needle in ("127.0.0.1:81", "Permission denied", "root", "CAP_NET_BIND_SERVICE"):
        assert needle in line, "%r not in %r" % (needle, line)


def test_privileged_admin_port_says_what_it_needs():
    r = run_unprivileged(["-l", "127.0.0.1:%d" % lp.free_port(), "--admin", "127.0.0.1:82", "-w", "1"])
    assert r.returncode == 1, r
    line = one_line(r.stderr)
    for needle in ("127.0.0.1:82", "--admin", "CAP_NET_BIND_SERVICE"):
        assert needle in line, "%r not in %r" % (needle, line)
