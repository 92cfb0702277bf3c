"""The documentation matches the code.

- docs/lua-api.md names every part of the Lua API that lua/*.c defines
  (proxy.* functions and fields, dict methods, req/res fields and methods,
  upstream fields, the server table of a Lua balancer, proxy.upstream's
  options, the hooks the core calls), and every such name it uses exists
  in the code, with the right separator (req.path is a field, req:set_path
  a method).
- docs/luaproxy.1 documents every option of --help, and only those.
- The systemd unit's command line is accepted by luaproxy; the logrotate
  snippet signals the pid file the unit writes.

The C side is read as text: luaL_Reg tables, the lua_setfield calls that
fill the proxy table, the key comparisons in the __index functions. When a
refactoring moves things so that a category comes out empty, the test says
so rather than passing."""

import os
import re
import shlex
import shutil
import subprocess
import time

import lp

LUA_DIR = lp.repo_path("lua")
API_DOC = lp.repo_path("docs", "lua-api.md")
MAN_PAGE = lp.repo_path("docs", "luaproxy.1")
UNIT = lp.repo_path("docs", "luaproxy.service")
LOGROTATE = lp.repo_path("docs", "luaproxy.logrotate")
LLHTTP_H = "/usr/share/include/llhttp/llhttp.h"

# Metatable name (the string in lua/*.c) -> how the doc names the object.
OBJECTS = {
    "luaproxy.shared": "dict",
    "luaproxy.req": "req",
    "luaproxy.res": "res",
    "luaproxy.upstream": "upstream",
    "luaproxy.socket.tcp": "sock",
    "luaproxy.socket.udp": "sock",
}


# --------------------------------------------------------------------------
# Reading the C sources


def c_sources():
    out = {}
    for name in sorted(os.listdir(LUA_DIR)):
        if name.endswith((".c", ".h")):
            with open(os.path.join(LUA_DIR, name)) as f:
                out[name] = f.read()
    return out


def strip_comments(src):
    src = re.sub(r"/\*.*?\*/", lambda m: " " * len(m.group(0)), src, flags=re.S)
    return re.sub(r"//[^\n]*", "", src)


FUNC_START = re.compile(r"^[A-Za-z_][\w \t\*]*?\b([A-Za-z_]\w*)\s*\([^;{}]*\)\s*\{", re.M)


def c_functions(src):
    """name -> body text of every function defined at the top level."""
    out = {}
    for m in FUNC_START.finditer(src):
        i = m.end() - 1
        depth = 0
        for j in range(i, len(src)):
            if src[j] == "{":
                depth += 1
            elif src[j] == "}":
                depth -= 1
                if depth == 0:
                    out[m.group(1)] = src[i:j + 1]
                    break
    return out


def reg_tables(src, c_names=False):
    """luaL_Reg table name -> [Lua names] (c_names: {Lua name: C function})."""
    out = {}
    for m in re.finditer(r"luaL_Reg\s+(\w+)\s*\[\]\s*=\s*\{(.*?)\};", src, re.S):
        pairs = re.findall(r'\{\s*"(\w+)"\s*,\s*(\w+)', m.group(2))
        out[m.group(1)] = dict(pairs) if c_names else [n for n, _ in pairs]
    return out


def code_api():
    """{kind: {name: 'field'|'method'}} for kinds proxy, dict, req, res,
    upstream, server, opts; and a set of hook names."""
    api = {k: {} for k in ("proxy", "dict", "req", "res", "upstream", "server", "opts", "sock")}
    hooks = set()
    all_funcs = {}
    texts = {n: strip_comments(t) for n, t in c_sources().items()}
    defines = {}
    for text in texts.values():
        for m in re.finditer(r'#define\s+(\w+)\s+"([^"]+)"', text):
            defines[m.group(1)] = m.group(2)
        all_funcs.update(c_functions(text))

    for name, text in texts.items():
        tables = reg_tables(text)
        c_tables = reg_tables(text, c_names=True)
        for fname, body in c_functions(text).items():
            # The proxy table: luaL_Reg tables set into it, and its fields.
            if 'lua_setglobal(L, "proxy")' in body:
                end = body.index('lua_setglobal(L, "proxy")')
                for tm in re.finditer(r"luaL_setfuncs\(L,\s*(\w+)", body[:end]):
                    after = body[tm.end():end]
                    if "__index" in after or "lua_pop" in after:
                        continue  # went into a metatable, not into proxy
                    for n in tables.get(tm.group(1), []):
                        api["proxy"][n] = "function"
                    for fm in re.finditer(r'lua_setfield\(L,\s*-2,\s*"(\w+)"\)', after):
                        api["proxy"][fm.group(1)] = "field"
            for gm in re.finditer(r'lua_getglobal\(L,\s*"proxy"\)(.*?)lua_pop\(L', body, re.S):
                for fm in re.finditer(r'lua_setfield\(L,\s*-2,\s*"(\w+)"\)', gm.group(1)):
                    api["proxy"][fm.group(1)] = "function"

            # Objects: luaL_newmetatable(L, MT) with an __index table or function.
            for mm in re.finditer(r"luaL_newmetatable\(L,\s*(\w+)\)(.*?)lua_pop\(L,\s*1\)", body, re.S):
                mt = defines.get(mm.group(1), mm.group(1))
                assert mt in OBJECTS, ("lua/%s: metatable %s is new: name its objects in "
                                       "tests/integration/test_docs.py OBJECTS and document them" % (name, mt))
                kind = OBJECTS[mt]
                part = mm.group(2)
                tm = re.search(r'luaL_setfuncs\(L,\s*(\w+),\s*\d+\);\s*lua_setfield\(L,\s*-2,\s*"__index"\)', part)
                if tm:
                    for n in tables.get(tm.group(1), []):
                        api[kind][n] = "method"
                # Methods written in Lua: a chunk loaded from a C string
                # whose functions are m.NAME.
                for lm in re.finditer(r"luaL_loadbuffer\(L,\s*(\w+)", part):
                    # The chunk may be defined in another file of lua/.
                    cm = re.search(r"(?:static )?const char %s\[\]\s*=(.*?);\n" % lm.group(1),
                                   "\n".join(texts.values()), re.S)
                    for n in re.findall(r"function m\.(\w+)\(", cm.group(1) if cm else ""):
                        api[kind][n] = "method"
                im = re.search(r'lua_push(?:cfunction\(L,\s*(\w+)\)|cclosure\(L,\s*(\w+),\s*\d+\));'
                               r'\s*lua_setfield\(L,\s*-2,\s*"__index"\)', part)
                index_fn = im and (im.group(1) or im.group(2))
                # Or a metamethod table that names the __index function.
                for rm in re.finditer(r"luaL_setfuncs\(L,\s*(\w+)", part):
                    index_fn = index_fn or c_tables.get(rm.group(1), {}).get("__index")
                if index_fn:
                    index_body = all_funcs[index_fn]
                    keys = list(re.finditer(r'(?:memcmp|strcmp)\(k,\s*"(\w+)"', index_body))
                    for i, km in enumerate(keys):
                        end = keys[i + 1].start() if i + 1 < len(keys) else len(index_body)
                        branch = index_body[km.end():end]
                        # A method is a C function pushed as such, or kept as an upvalue.
                        is_method = "lua_pushcfunction" in branch or "lua_upvalueindex" in branch
                        api[kind][km.group(1)] = "method" if is_method else "field"

            # The server tables a Lua balancer gets.
            if re.search(r'lstate_call\(\w+,\s*"balance"', body):
                # Its fields, and those of the helper that starts each table.
                helpers = [all_funcs.get(h, "") for h in re.findall(r"(\w+_push_server)\(", body)]
                for fm in re.finditer(r'lua_setfield\(L,\s*-2,\s*"(\w+)"\)', body + "".join(helpers)):
                    api["server"][fm.group(1)] = "field"

        # proxy.upstream's options (its third argument: index 3, or a
        # helper's parameter named up_opts).
        for om in re.finditer(r'(?:opt_\w+|lua_getfield)\(L,\s*(?:3|up_opts),\s*"(\w+)"', text):
            api["opts"][om.group(1)] = "field"
        # Hooks: globals the C side looks up.
        for hm in re.finditer(r'(?:lua_getfield\(L,\s*LUA_GLOBALSINDEX,|lua_getglobal\(L,|has_function\(L,)\s*"(\w+)"',
                              text):
            if hm.group(1) not in ("proxy", "tostring"):
                hooks.add(hm.group(1))
        if re.search(r'"on_(%s)?"', text):
            hooks.add("on_<method>")
    return api, hooks


# --------------------------------------------------------------------------
# Reading the reference


def doc_code_text(md):
    """The text of inline code spans and fenced code blocks."""
    parts = re.findall(r"^```[^\n]*\n(.*?)^```", md, re.S | re.M)
    rest = re.sub(r"^```[^\n]*\n.*?^```", "", md, flags=re.S | re.M)
    parts += re.findall(r"`([^`\n]+)`", rest)
    return "\n".join(parts)


NAME_PATTERNS = {
    "proxy": r"(?<![\w.])proxy(\.)(\w+)",
    "dict": r"(?<![\w.])dict([.:])(\w+)",
    "req": r"(?<![\w.])req([.:])(\w+)",
    "res": r"(?<![\w.])res([.:])(\w+)",
    "upstream": r"(?<![\w.])upstream([.:])(\w+)",
    "server": r"(?<![\w.])server([.:])(\w+)",
    "opts": r"(?<![\w.])opts([.:])(\w+)",
    "sock": r"(?<![\w.])sock([.:])(\w+)",
}


def doc_names(code_text):
    """{kind: {(sep, name)}}"""
    return {k: set(re.findall(p, code_text)) for k, p in NAME_PATTERNS.items()}


def sep_for(kind, what):
    if kind == "proxy":
        return "."
    return ":" if what == "method" else "."


def handler_methods():
    """The methods that can have an on_<method> handler, as the handler
    names spell them: the IANA registry's when lua/*.c lists it (with '-'
    written '_'), else every method llhttp knows."""
    for text in c_sources().values():
        m = re.search(r"iana_methods\[\]\s*=\s*\{(.*?)\};", text, re.S)
        if m:
            return {n.lower().replace("-", "_") for n in re.findall(r'"([A-Z][A-Z-]*)"', m.group(1))}
    with open(LLHTTP_H) as f:
        text = f.read()
    block = text[text.index("#define HTTP_METHOD_MAP"):]
    block = block[:block.index("\n\n")]
    return {m.lower() for m in re.findall(r"XX\(\d+,\s*\w+,\s*([\w-]+)\)", block)}


# --------------------------------------------------------------------------
# The tests


def test_code_extraction_finds_the_api():
    """The parser of lua/*.c still understands the sources (else the two
    tests below would pass on nothing)."""
    api, hooks = code_api()
    for kind, at_least in (("proxy", {"upstream", "shared", "log", "now", "worker_id"}),
                           ("dict", {"get", "set", "incr"}),
                           ("req", {"method", "path", "headers", "set_header"}),
                           ("res", {"status", "headers", "set_header"}),
                           ("upstream", {"name"}),
                           ("server", {"addr", "active"}),
                           ("opts", {"balance", "hash_key", "keepalive"}),
                           ("sock", {"setkeepalive", "close", "connect", "receive"})):
        missing = at_least - set(api[kind])
        assert not missing, "reading lua/*.c found no %s.%s: update test_docs.py" % (kind, sorted(missing))
    assert api["req"]["set_header"] == "method" and api["req"]["path"] == "field", api["req"]
    assert {"route", "on_response", "on_<method>"} <= hooks, hooks


def test_every_api_name_in_the_code_is_documented():
    api, hooks = code_api()
    with open(API_DOC) as f:
        md = f.read()
    code = doc_code_text(md)
    found = doc_names(code)
    missing = []
    for kind, names in api.items():
        for name, what in sorted(names.items()):
            if (sep_for(kind, what), name) not in found[kind]:
                missing.append("%s%s%s" % (kind, sep_for(kind, what), name))
    for hook in sorted(hooks):
        if not re.search(r"(?<![\w.])%s(?![\w-])" % re.escape(hook), code):
            missing.append(hook)
    assert not missing, "docs/lua-api.md does not document: %s" % ", ".join(missing)


def test_every_name_in_the_reference_exists_in_the_code():
    api, _ = code_api()
    with open(API_DOC) as f:
        md = f.read()
    code = doc_code_text(md)
    unknown = []
    for kind, pairs in doc_names(code).items():
        for sep, name in sorted(pairs):
            what = api[kind].get(name)
            if what is None or sep != sep_for(kind, what):
                unknown.append("%s%s%s" % (kind, sep, name))
    methods = handler_methods()
    assert {"get", "post", "delete"} <= methods, methods
    for h in sorted(set(re.findall(r"(?<![\w.\"])on_([a-z][a-z_-]*|<method>)", code))):
        if h not in ("response", "<method>") and h not in methods:
            unknown.append("on_" + h)
    assert not unknown, "docs/lua-api.md names what lua/*.c does not define: %s" % ", ".join(unknown)


def test_doc_checker_catches_a_missing_and_an_unknown_name():
    """The two checks above can fail: a made-up name is caught, a dropped
    one is noticed."""
    api, _ = code_api()
    found = doc_names("`req.nonexistent` `req:path` `proxy.shared(x)`")
    assert (".", "nonexistent") in found["req"] and "nonexistent" not in api["req"]
    assert (":", "path") in found["req"] and sep_for("req", api["req"]["path"]) == "."
    assert (".", "now") not in found["proxy"]


def help_options():
    r = lp.run_cli(["--help"])
    assert r.returncode == 0, r
    longs = set(re.findall(r"(?<![\w-])--([a-z][a-z-]*)", r.stdout))
    shorts = set(re.findall(r"(?<![\w-])-([a-zA-Z]),", r.stdout))
    assert len(longs) >= 15, r.stdout
    return longs, shorts, r.stdout


def man_text():
    with open(MAN_PAGE) as f:
        raw = f.read()
    text = raw.replace("\\-", "-").replace("\\(em", "--")
    text = re.sub(r"\\f[BIRP]", "", text)
    return raw, text


def test_man_page_documents_every_option_of_help_and_no_other():
    longs, shorts, _ = help_options()
    raw, text = man_text()
    assert raw.startswith(".TH LUAPROXY 1") or re.search(r"^\.TH LUAPROXY 1", raw, re.M), "no .TH header"
    missing = sorted(o for o in longs if "--" + o not in text)
    assert not missing, "docs/luaproxy.1 does not document --%s" % ", --".join(missing)
    for s in shorts:
        assert re.search(r"(?<![\w-])-%s\b" % s, text), "docs/luaproxy.1 does not document -%s" % s
    in_man = set(re.findall(r"(?<![\w-])--([a-z][a-z-]*)", text))
    unknown = sorted(in_man - longs)
    assert not unknown, "docs/luaproxy.1 names options --help does not have: --%s" % ", --".join(unknown)


def test_man_page_defaults_match_help():
    """Each option's default as --help states it, e.g. '(10s)', appears in
    the man page's entry for that option."""
    _, _, help_text = help_options()
    _, text = man_text()
    entries = re.split(r"^\.TP\b", text, flags=re.M)
    checked = 0
    for line in help_text.split("\n"):
        m = re.match(r"\s+(?:-\w, )?--([a-z-]+)(?: \S+)?\s+.*\((\d[^ ,)]*)[,)]", line)
        if not m:
            continue
        name, default = m.groups()
        entry = next((e for e in entries
                      if re.match(r"\s*(?:-\w, )?--%s(?![\w-])" % re.escape(name), e)), None)
        assert entry is not None, "no .TP entry for --%s in docs/luaproxy.1" % name
        assert default in entry, "--%s: --help says default %s, the man page entry does not" % (name, default)
        checked += 1
    assert checked >= 8, "parsed only %d defaults from --help" % checked


def test_man_page_renders_without_warnings():
    # groff (Debian's groff-base) is a test dependency that scripts/deps.sh
    # installs: without it this check would say nothing, so it fails.
    assert shutil.which("groff"), "groff is not installed (scripts/deps.sh installs groff-base)"
    r = subprocess.run(["groff", "-man", "-Tutf8", "-ww", "-z", MAN_PAGE], capture_output=True,
                       text=True, timeout=20)
    assert r.returncode == 0 and r.stderr.strip() == "", "groff: %s" % r.stderr


def unit_exec_start():
    with open(UNIT) as f:
        text = f.read()
    lines = [l.split("=", 1)[1] for l in text.split("\n") if l.startswith("ExecStart=")]
    assert len(lines) == 1, "one ExecStart= in %s" % UNIT
    return text, shlex.split(lines[0].replace("\\\n", " "))


def test_systemd_unit_command_line_is_accepted():
    text, argv = unit_exec_start()
    assert argv[0].endswith("/luaproxy"), argv
    for key in ("ExecReload=", "KillSignal=SIGTERM", "TimeoutStopSec=", "LimitNOFILE="):
        assert key in text, "%s is missing from the unit" % key
    # The unit's options with our own script, run with --check: every option
    # must parse (the paths need not exist for --check).
    script = lp.write_script('function on_get(req) return 200 end\n', name="unit.lua")
    args = argv[1:-1] + ["--check", script]
    r = lp.run_cli(args)
    assert r.returncode == 0 and r.stdout.strip() == "ok", "ExecStart options refused: %r" % r
    # Graceful stop must fit in systemd's stop timeout.
    # Without --shutdown-timeout in the unit, the default of --help counts.
    m = re.search(r"--shutdown-timeout[ =](\d+)s", " ".join(argv))
    if m is None:
        m = re.search(r"--shutdown-timeout DUR.*\((\d+)s\)", lp.run_cli(["--help"]).stdout)
    stop = re.search(r"TimeoutStopSec=(\d+)", text)
    assert m and stop, "cannot read --shutdown-timeout (%r) or TimeoutStopSec= (%r)" % (m, stop)
    assert int(stop.group(1)) > int(m.group(1)), "TimeoutStopSec must exceed --shutdown-timeout"


def test_logrotate_signals_the_pid_file_of_the_unit():
    _, argv = unit_exec_start()
    pid_file = argv[argv.index("--pid-file") + 1]
    log = argv[argv.index("--access-log") + 1]
    with open(LOGROTATE) as f:
        text = f.read()
    assert os.path.dirname(log) in text, "the logrotate snippet does not rotate %s" % log
    assert "postrotate" in text and "USR1" in text and pid_file in text, text


# --------------------------------------------------------------------------
# The README and the documents it leads to

README = lp.repo_path("README.md")
DOCS_DIR = lp.repo_path("docs")
CONFIG_DOC = lp.repo_path("docs", "configuration.md")


def read(path):
    with open(path) as f:
        return f.read()


def markdown_files():
    out = [README]
    for name in sorted(os.listdir(DOCS_DIR)):
        if name.endswith(".md"):
            out.append(os.path.join(DOCS_DIR, name))
    return out


def without_code_blocks(md):
    return re.sub(r"^```[^\n]*\n.*?^```[ \t]*$", "", md, flags=re.S | re.M)


def heading_anchors(md):
    """GitHub's anchors for the headings of a document: lower case, the
    characters other than letters, digits, spaces, '-' and '_' dropped,
    spaces as '-'; a repeated one gets -1, -2, ..."""
    anchors, seen = set(), {}
    for m in re.finditer(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", without_code_blocks(md), re.M):
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else "%s-%d" % (slug, n))
    return anchors


def test_links_between_the_documents_resolve():
    """Every relative link of README.md and docs/*.md names a file that
    exists and, with a #fragment, a heading of that file."""
    checked, broken = 0, []
    for path in markdown_files():
        md = without_code_blocks(read(path))
        md = re.sub(r"`[^`\n]*`", "``", md)  # no links inside code spans
        for target in re.findall(r"\]\(([^)\s]+)\)", md):
            if re.match(r"[a-z]+:", target):
                continue
            file_part, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(path), file_part)) if file_part else path
            where = "%s: (%s)" % (os.path.relpath(path, lp.ROOT), target)
            checked += 1
            if not os.path.exists(dest):
                broken.append(where + " no such file")
            elif anchor and anchor not in heading_anchors(read(dest)):
                broken.append(where + " no such heading")
    assert checked >= 30, "found only %d links: is the link syntax still parsed?" % checked
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_link_checker_sees_anchors():
    anchors = heading_anchors("# A\n## Metrics and status (`--admin ADDR:PORT`)\n```\n# not a heading\n```\n## A\n")
    assert anchors == {"a", "metrics-and-status---admin-addrport", "a-1"}, anchors


def test_the_readme_is_a_front_page_that_leads_to_every_document():
    md = read(README)
    lines = md.count("\n")
    assert lines <= 250, "README.md has %d lines: the detail belongs in docs/" % lines
    for path in markdown_files()[1:]:
        name = os.path.basename(path)
        if name.startswith("bench-results-"):
            continue  # a saved benchmark output, linked from performance.md
        assert "(docs/%s" % name in md, "README.md does not link to docs/%s" % name
    for command in ("make run", "make test"):
        assert command in md, command


def test_configuration_doc_documents_every_option_of_help():
    longs, shorts, _ = help_options()
    text = read(CONFIG_DOC)
    missing = sorted(o for o in longs if "--" + o not in text)
    missing += sorted("-" + s for s in shorts if not re.search(r"(?<![\w-])-%s\b" % s, text))
    assert not missing, "docs/configuration.md does not document: --%s" % ", --".join(missing)


ISSUE_REF = re.compile(r"\bissue[ _-]?#?[0-9]", re.I)
SKIP_DIRS = {".git", "build", "corpus", "regressions"}


def test_no_document_comment_or_test_names_an_issue_number():
    """The documents, the code and the tests say what they mean, not which
    issue asked for it."""
    found, scanned = [], 0
    for top, dirs, files in os.walk(lp.ROOT):
        dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
        for name in files:
            path = os.path.join(top, name)
            try:
                if os.path.getsize(path) > 1 << 20:
                    continue
                with open(path, encoding="utf-8") as f:
                    text = f.read()
            except (OSError, UnicodeDecodeError):
                continue
            scanned += 1
            for n, line in enumerate(text.split("\n"), 1):
                if ISSUE_REF.search(line):
                    found.append("%s:%d: %s" % (os.path.relpath(path, lp.ROOT), n, line.strip()[:100]))
    assert scanned >= 50, "scanned only %d files" % scanned
    assert not found, "issue numbers:\n" + "\n".join(found)
    # And in the Markdown prose, no "#12"-style reference either.
    for path in markdown_files():
        prose = re.sub(r"``.+?``", "", without_code_blocks(read(path)), flags=re.S)
        prose = re.sub(r"`[^`]+`", "", prose)
        refs = re.findall(r"(?<![\w&/])#[0-9]+\b", prose)
        assert not refs, "%s: %s" % (path, refs)


# The quick tour: the README's script and shell session, run as written,
# with only the two ports and the binary's path replaced.

TOUR_PROXY_PORT = "127.0.0.1:8080"
TOUR_TLS_PORT = ":8443"
TOUR_BACKEND_PORT = "9001"


def readme_tour():
    md = read(README)
    start = md.index("\n## A quick tour")
    tour = md[start:md.index("\n## ", start + 5)]
    lua = re.findall(r"^```lua\n(.*?)^```", tour, re.S | re.M)
    blocks = re.findall(r"^```console\n(.*?)^```", tour, re.S | re.M)
    assert len(lua) == 1 and len(blocks) >= 2, "the quick tour has a lua block and console blocks"
    steps = []
    for block in blocks:
        for line in block.rstrip("\n").split("\n"):
            if line.startswith("$ "):
                steps.append((line[2:], []))
            else:
                assert steps, "output before the first command: %r" % line
                steps[-1][1].append(line)
    name = re.match(r"-- (\S+\.lua)", lua[0])
    assert name, "the tour's script starts with a comment naming its file"
    return name.group(1), lua[0], steps


def test_readme_quick_tour_runs_as_written():
    """The README's tour: a backend, the proxy with the tour's script, the
    requests with the outputs shown, a SIGHUP reload after editing the
    script, and a graceful stop."""
    script_name, script, steps = readme_tour()
    assert any("kill -HUP" in c for c, _ in steps), "the tour shows no reload"
    assert "proxy.upstream" in script and "function route" in script and "function on_" in script
    proxy_port, backend_port, tls_port = lp.free_port(), lp.free_port(), lp.free_port()
    tmp = lp.make_tmpdir()
    os.symlink(DOCS_DIR, os.path.join(tmp, "docs"))

    def adapt(text):
        text = text.replace(TOUR_PROXY_PORT, "127.0.0.1:%d" % proxy_port)
        text = text.replace(TOUR_TLS_PORT, ":%d" % tls_port)
        text = text.replace(TOUR_BACKEND_PORT, str(backend_port))
        return text.replace("build/luaproxy", shlex.quote(lp.binary()))

    with open(os.path.join(tmp, script_name), "w") as f:
        f.write(adapt(script))
    # The proxy listens where the tour says through the environment, so that
    # its command line stays as written.
    env = lp._child_env({"LUAPROXY_LISTEN": "127.0.0.1:%d" % proxy_port, "LUAPROXY_WORKERS": "2"})
    background, logs = [], []
    try:
        for cmd, expected in steps:
            cmd = adapt(cmd)
            if cmd.rstrip().endswith("&"):
                log = open(os.path.join(tmp, "job%d.log" % len(background)), "w+")
                logs.append(log)
                proc = subprocess.Popen(["bash", "-c", "exec " + cmd.rstrip()[:-1]], cwd=tmp, env=env,
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
                holder = lp._Cli(proc)
                lp._live.append(holder)
                background.append(proc)
                assert not expected, "a background command with output: %r" % cmd
                continue
            cmd = re.sub(r"%(\d+)", lambda m: str(background[int(m.group(1)) - 1].pid), cmd)
            want = "\n".join(expected)
            # The servers start, and a reload applies, asynchronously: a step
            # is repeated until it gives the output shown, within a deadline.
            deadline = time.monotonic() + 10
            while True:
                r = subprocess.run(["bash", "-c", cmd], cwd=tmp, env=env, capture_output=True, text=True,
                                   timeout=10)
                if r.returncode == 0 and r.stdout.rstrip("\n") == want:
                    break
                if time.monotonic() > deadline:
                    logs_text = "".join(open(l.name).read()[-1500:] for l in logs)
                    raise AssertionError("tour step %r: exit %d, output %r, the README shows %r\nlogs:\n%s"
                                         % (cmd, r.returncode, r.stdout, want, logs_text))
                time.sleep(0.1)
        proxy = next(p for p in background if "luaproxy" in " ".join(p.args))
        try:
            rc = proxy.wait(15)
        except subprocess.TimeoutExpired:
            raise AssertionError("the tour's last step did not stop luaproxy")
        assert rc == 0, "luaproxy exited %d at the end of the tour" % rc
        text = open(logs[background.index(proxy)].name).read()
        assert "[error]" not in text, text
    finally:
        for p in background:
            if p.poll() is None:
                lp._killpg(p.pid)
                p.wait(5)
        for log in logs:
            log.close()
    # What the tour says about --check and --try holds too.
    path = os.path.join(tmp, script_name)
    r = lp.run_cli(["--check", path])
    assert r.returncode == 0 and r.stdout.strip() == "ok", r
    r = lp.run_cli(["--try", "GET /docs/x", path])
    assert r.returncode == 0 and r.stdout.startswith("upstream: "), r
