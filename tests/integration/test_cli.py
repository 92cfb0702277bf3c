"""SPEC §1: the command line, --check, exit statuses, LUAPROXY_* variables."""

import re
import socket

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
