"""SPEC §3, what a newcomer meets first: print() goes to the error log,
misnamed hooks are named at load and never called, and require finds the
script's own modules whatever the working directory."""

import os
import re

import lp


def log_lines(text, needle):
    return [l for l in text.split("\n") if needle in l]


def test_print_goes_to_the_error_log_at_info_when_stdout_is_a_file():
    # lp.Proxy sends stdout to a file: not a terminal, as under systemd.
    script = ('print("top-level", 1, nil, true)\n'
              'function on_get(req)\n'
              '  print("printed-by", req.path, 42)\n'
              '  return 200, "ok"\n'
              'end\n')
    with lp.Proxy(script) as p:
        lp.expect(lp.get(p.port, "/x"), 200, b"ok")
        text = p.wait_stderr("printed-by\t/x\t42")
        [line] = log_lines(text, "printed-by")
        assert re.search(r"\[info\]", line), "not at level info: %r" % line
        assert log_lines(text, "top-level\t1\tnil\ttrue"), text
        assert "printed-by" not in p.stdout_text(), "print still writes to stdout"


def test_print_follows_the_log_level():
    script = ('function on_get(req) print("quiet-marker") proxy.log("warn", "loud-marker") return 200 end\n')
    with lp.Proxy(script, args=["--log-level", "warn"]) as p:
        lp.expect(lp.get(p.port, "/"), 200)
        text = p.wait_stderr("loud-marker")
        assert "quiet-marker" not in text + p.stdout_text(), text


MISNAMED = r'''
function rout(req) return 200, "rout was called" end
function on_respone(req, res) res:set_header("x-respone", "called") end
function on_error(req) return 200, "on_error was called" end
function on_purge(req) return 200, "on_purge was called" end
function onPost(req) return 200, "onPost was called" end
function router(req) end          -- an ordinary helper: no warning
function on_get(req) return 200, "get" end
'''


def warnings(text):
    return [l for l in text.split("\n") if "[warn]" in l]


def check_misnamed_warnings(lines):
    def one(name):
        found = [l for l in lines if "function %s " % name in l]
        assert len(found) == 1, "%s: %d warning lines: %r" % (name, len(found), lines)
        return found[0]
    assert "did you mean route?" in one("rout")
    assert "did you mean on_response?" in one("on_respone")
    assert "did you mean on_post?" in one("onPost")
    for name in ("on_error", "on_purge"):
        line = one(name)
        assert "not a method" in line and "route, on_response and on_<method>" in line, line
    assert not [l for l in lines if "router" in l], lines
    assert not [l for l in lines if "on_get" in l and "function on_get " in l], lines


def test_misnamed_hooks_warned_at_check_and_still_ok():
    path = lp.write_script(MISNAMED)
    r = lp.run_cli(["--check", path])
    assert r.returncode == 0 and r.stdout.strip() == "ok", r
    check_misnamed_warnings(warnings(r.stderr))


def test_misnamed_hooks_are_never_called_nor_allowed():
    with lp.Proxy(MISNAMED, workers=2) as p:
        text = p.wait_stderr("on_respone")
        # Once per load (the master's check), not once per worker.
        check_misnamed_warnings(warnings(text))
        r = lp.get(p.port, "/")
        lp.expect(r, 200, b"get")
        assert "x-respone" not in r.headers, r
        r = lp.request(p.port, "DELETE", "/")
        assert r.status == 405, r
        assert r.headers.get("allow") == "GET, HEAD", r
        # PURGE is no method of the registry: route would see it, no handler.
        with lp.Conn(p.port) as c:
            r = c.request("PURGE", "/")
            assert r.status == 405 and b"on_purge" not in r.body, r
            assert r.headers.get("allow") == "GET, HEAD", r


def test_handler_for_a_webdav_method_is_a_hook():
    script = ('function on_propfind(req) return 207, "dav" end\n'
              'function on_mkcol(req) return 201 end\n')
    path = lp.write_script(script)
    r = lp.run_cli(["--check", path])
    assert r.returncode == 0 and not warnings(r.stderr), r
    with lp.Proxy(script) as p:
        with lp.Conn(p.port) as c:
            lp.expect(c.request("PROPFIND", "/"), 207, b"dav")
            r = c.request("GET", "/")
            assert r.status == 405 and r.headers.get("allow") == "MKCOL, PROPFIND", r


MAIN = r'''
local mylib = require "mylib"
local sub = require "pkg"
function on_get(req) return 200, mylib.name .. "+" .. sub.name end
'''


def module_dir():
    d = lp.make_tmpdir()
    with open(os.path.join(d, "mylib.lua"), "w") as f:
        f.write('return { name = "mylib" }\n')
    os.mkdir(os.path.join(d, "pkg"))
    with open(os.path.join(d, "pkg", "init.lua"), "w") as f:
        f.write('return { name = "pkg" }\n')
    return d


def test_require_finds_modules_beside_the_script_from_another_cwd():
    d = module_dir()
    script = lp.write_script(MAIN, directory=d)
    elsewhere = lp.make_tmpdir()
    r = lp.run_cli(["--check", script], cwd=elsewhere)
    assert r.returncode == 0, r
    # A relative script path, from the directory above the script's.
    r = lp.run_cli(["--check", os.path.join(os.path.basename(d), "script.lua")], cwd=os.path.dirname(d))
    assert r.returncode == 0, r
    # lp.Proxy runs the server from the repository root.
    with lp.Proxy(script) as p:
        lp.expect(lp.get(p.port, "/"), 200, b"mylib+pkg")


def test_require_does_not_look_in_the_working_directory():
    d = module_dir()
    script = lp.write_script('local m = require "cwdonly"\nfunction on_get() return 200 end\n')
    with open(os.path.join(d, "cwdonly.lua"), "w") as f:
        f.write("return {}\n")
    r = lp.run_cli(["--check", script], cwd=d)
    assert r.returncode == 2 and "cwdonly" in r.stderr, r


def test_missing_module_is_a_short_error():
    script = lp.write_script('local m = require "no_such_mod"\nfunction on_get() return 200 end\n')
    for args in (["--check", script], ["--listen", "127.0.0.1:%d" % lp.free_port(), script]):
        r = lp.run_cli(args)
        assert r.returncode == 2, r
        lines = [l for l in r.stderr.split("\n") if l.strip()]
        assert 1 <= len(lines) <= 3, "%d lines:\n%s" % (len(lines), r.stderr)
        assert "no_such_mod" in lines[0] and "script.lua:1" in lines[0], r.stderr


def test_error_inside_a_module_is_kept():
    d = lp.make_tmpdir()
    with open(os.path.join(d, "broken.lua"), "w") as f:
        f.write('local x = nil\nreturn x.field\n')
    script = lp.write_script('require "broken"\n', directory=d)
    r = lp.run_cli(["--check", script])
    assert r.returncode == 2 and "broken.lua:2" in r.stderr, r


def test_misnamed_hooks_warned_at_reload():
    import signal
    with lp.Proxy('function on_get(req) return 200, "v1" end\n', workers=2) as p:
        with open(p.script_path, "w") as f:
            f.write('function on_get(req) return 200, "v2" end\nfunction on_pots(req) end\n')
        p.send_signal(signal.SIGHUP)
        text = p.wait_stderr("function on_pots ")
        lp.wait_until(lambda: lp.get(p.port, "/").body == b"v2", what="the reloaded script")
        lines = [l for l in p.stderr_text().split("\n") if "function on_pots " in l]
        assert len(lines) == 1 and "did you mean on_post?" in lines[0], text
