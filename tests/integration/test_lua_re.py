"""proxy.re (SPEC §8): PCRE2 regular expressions with the semantics of
OpenResty's ngx.re. The expected values are the ones lua-nginx-module's
documentation gives for ngx.re.match, find, gmatch, sub and gsub, plus the
edges it implies: unmatched groups are false, a bad pattern is nil and
pcre2_compile()'s message, an unknown flag raises, subjects may hold NUL
bytes, and the per-worker cache of compiled patterns stays bounded.

Each test starts a luaproxy whose POST handler runs the Lua chunk it is
sent and answers with show(...) of its results: tables with sorted keys,
strings quoted with %q (so "\\0" for a NUL byte)."""

import time

import lp

SCRIPT = r'''
local function dump(v)
  if type(v) ~= "table" then
    return type(v) == "string" and string.format("%q", v):gsub("\\\n", "\\n") or tostring(v)
  end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    if type(a) == type(b) then return a < b end
    return type(a) == "number"
  end)
  local out = {}
  for _, k in ipairs(keys) do out[#out + 1] = "[" .. dump(k) .. "]=" .. dump(v[k]) end
  return "{" .. table.concat(out, ",") .. "}"
end
local function show(...)
  local t = {}
  for i = 1, select("#", ...) do t[i] = dump((select(i, ...))) end
  return table.concat(t, " ")
end
function on_post(req)
  local f, err = loadstring(req.body, "=case")
  if not f then return 400, err end
  setfenv(f, setmetatable({ show = show }, { __index = _G }))
  return 200, f()
end
'''


def run(p, lua):
    r = lp.post(p.port, "/", lua.encode())
    assert r.status == 200, "%s\n-> %r\n%s" % (lua, r, p.stderr_text()[-1500:])
    return r.body.decode("utf-8")


def check(p, cases):
    for lua, want in cases:
        got = run(p, lua)
        assert got == want, "%s\n  got:  %s\n  want: %s" % (lua, got, want)


def test_match_gives_captures_as_openresty_documents():
    with lp.Proxy(SCRIPT) as p:
        check(p, [
            ('return show(proxy.re.match("hello, 1234", "[0-9]+"))', '{[0]="1234"}'),
            ('return show(proxy.re.match("hello, 1234", "([0-9])[0-9]+"))', '{[0]="1234",[1]="1"}'),
            ('return show(proxy.re.match("hello, 1234", "([0-9])(?<remaining>[0-9]+)"))',
             '{[0]="1234",[1]="1",[2]="234",["remaining"]="234"}'),
            # An unmatched group is false, by number and by name.
            ('return show(proxy.re.match("hello, world", "(world)|(hello)|(?<named>howdy)"))',
             '{[0]="hello",[1]=false,[2]="hello",[3]=false,["named"]=false}'),
            ('return show(proxy.re.match("hello", "(h)(x)?(e)"))', '{[0]="he",[1]="h",[2]=false,[3]="e"}'),
            # "D": a repeated name is the list of what its groups matched.
            (r'return show(proxy.re.match("hello, world", "(?<named>\\w+), (?<named>\\w+)", "D"))',
             '{[0]="hello, world",[1]="hello",[2]="world",["named"]={[1]="hello",[2]="world"}}'),
            ('return show(proxy.re.match("hello, world", "HEL LO", "ix"))', '{[0]="hello"}'),
            ('return show(proxy.re.match("hello, 美好生活", "HELLO, (.{2})", "iu"))',
             '{[0]="hello, 美好",[1]="美好"}'),
            ('return show(proxy.re.match("hello, 1234", "[a-z]+[0-9]"))', 'nil'),
            # ctx.pos: where to start (1-based); set after the match on success.
            ('local ctx = {}; local m = proxy.re.match("1234, hello", "[0-9]+", "", ctx); return show(m, ctx)',
             '{[0]="1234"} {["pos"]=5}'),
            ('local ctx = {pos = 2}; local m = proxy.re.match("1234, hello", "[0-9]+", "", ctx); '
             'return show(m, ctx)', '{[0]="234"} {["pos"]=5}'),
            ('local ctx = {pos = 5}; local m = proxy.re.match("1234, hello", "[0-9]+", "", ctx); '
             'return show(m, ctx)', 'nil {["pos"]=5}'),
            # "a" with ctx: a lexer.
            ('local ctx, toks = {}, {}; while true do '
             '  local m = proxy.re.match("ab 12 cd", [[\\s*(\\w+)]], "a", ctx); if not m then break end; '
             '  toks[#toks + 1] = m[1] end; return show(toks, ctx)',
             '{[1]="ab",[2]="12",[3]="cd"} {["pos"]=9}'),
            # res: the caller's table is filled and returned.
            ('local t = {}; local m = proxy.re.match("ab", "(a)(b)", "", nil, t); return show(m == t, t)',
             'true {[0]="ab",[1]="a",[2]="b"}'),
        ])
        got = run(p, 'return show(pcall(proxy.re.match, "x", "x", "", 42))')
        assert got.startswith('false "bad argument #4 '), got


def test_flags_case_insensitive_anchored_multiline_dotall():
    with lp.Proxy(SCRIPT) as p:
        check(p, [
            ('return show(proxy.re.match("HELLO", "hello", "i"), proxy.re.match("HELLO", "hello"))',
             '{[0]="HELLO"} nil'),
            ('return show(proxy.re.match("say hello", "hello", "a"), proxy.re.match("say hello", "hello"))',
             'nil {[0]="hello"}'),
            ('return show(proxy.re.match("hello there", "hello", "a"))', '{[0]="hello"}'),
            ('return show(proxy.re.find("a\\nb", "^b$"), proxy.re.find("a\\nb", "^b$", "m"))', 'nil 3 3'),
            ('return show(proxy.re.match("a\\nb", "a.b"), proxy.re.match("a\\nb", "a.b", "s"))',
             'nil {[0]="a\\nb"}'),
            # "o" and "j" are accepted (compiled once and JIT-compiled always).
            ('return show(proxy.re.match("x1", "[0-9]", "jo"), proxy.re.match("x1", "[0-9]", "oj"))',
             '{[0]="1"} {[0]="1"}'),
            # "J": JavaScript's \\u escapes.
            ('return show(proxy.re.match("A", "\\\\u0041", "J"))', '{[0]="A"}'),
            # "d": the DFA's longest match, no groups.
            ('return show(proxy.re.match("abcd", "a|ab|abc", "d"), proxy.re.match("abcd", "a|ab|abc"))',
             '{[0]="abc"} {[0]="a"}'),
        ])
        # An unknown flag raises, naming it (OpenResty: a Lua error, not nil, err).
        got = run(p, 'return show(pcall(proxy.re.match, "x", "x", "iq"))')
        assert got == 'false "unknown flag \\"q\\" (flags \\"iq\\")"', got


def test_find_returns_one_based_bounds():
    with lp.Proxy(SCRIPT) as p:
        check(p, [
            ('local s = "hello, 1234"; local from, to = proxy.re.find(s, "([0-9]+)", "jo"); '
             'return show(from, to, s:sub(from, to))', '8 11 "1234"'),
            ('return show(proxy.re.find("hello, 1234", "([0-9])([0-9]+)", "jo", nil, 2))', '9 11'),
            ('return show(proxy.re.find("hello, 1234", "([0-9])([0-9]+)", "jo", nil, 1))', '8 8'),
            ('return show(proxy.re.find("hello", "(h)(x)?", "", nil, 2))', 'nil nil'),
            ('return show(proxy.re.find("hello", "(h)", "", nil, 3))', 'nil nil "nth out of bound"'),
            ('return show(proxy.re.find("hello", "[0-9]"))', 'nil'),
            ('local ctx = {pos = 9}; local f, t = proxy.re.find("1234, 1234", "[0-9]+", "", ctx); '
             'return show(f, t, ctx)', '9 10 {["pos"]=11}'),
            ('return show(proxy.re.find("x", "(?<"))',
             'nil nil "pcre2_compile() failed: subpattern name expected in \\"(?<\\""'),
        ])


def test_gmatch_iterates_every_match_then_nil():
    with lp.Proxy(SCRIPT) as p:
        check(p, [
            ('local it = proxy.re.gmatch("hello, world!", "([a-z]+)", "i"); return show(it(), it(), it(), it())',
             '{[0]="hello",[1]="hello"} {[0]="world",[1]="world"} nil nil'),
            ('local t = {}; for m in proxy.re.gmatch("a=1, b=22, c=333", "(?<k>\\\\w)=(?<v>\\\\d+)") do '
             't[#t + 1] = m.k .. ":" .. m.v end; return show(t)', '{[1]="a:1",[2]="b:22",[3]="c:333"}'),
            # Empty matches advance one character: "" matches 3 times in "ab", as in Perl.
            ('local t = {}; for m in proxy.re.gmatch("ab", "") do t[#t + 1] = m[0] end; return show(#t)', '3'),
            ('local t = {}; for m in proxy.re.gmatch("abc", "b*") do t[#t + 1] = m[0] end; return show(t)',
             '{[1]="",[2]="b",[3]="",[4]=""}'),
            ('return show(proxy.re.gmatch("x", "("))',
             'nil "pcre2_compile() failed: missing closing parenthesis in \\"(\\""'),
        ])


def test_sub_and_gsub_with_templates_and_functions():
    with lp.Proxy(SCRIPT) as p:
        check(p, [
            ('return show(proxy.re.sub("hello, 1234", "([0-9])[0-9]", "[$0][$1]"))', '"hello, [12][1]34" 1'),
            ('return show(proxy.re.sub("hello, 1234", "[0-9]", "${0}00"))', '"hello, 100234" 1'),
            ('return show(proxy.re.sub("hello, 1234", "[0-9]", "$$"))', '"hello, $234" 1'),
            ('return show(proxy.re.sub("hello, 1234", "( [0-9] ) [0-9]", '
             'function(m) return "[" .. m[0] .. "][" .. m[1] .. "]" end, "x"))', '"hello, [12][1]34" 1'),
            ('return show(proxy.re.gsub("hello, world", "([a-z])[a-z]+", "[$0,$1]", "i"))',
             '"[hello,h], [world,w]" 2'),
            ('return show(proxy.re.gsub("hello, world", "([a-z])[a-z]+", '
             'function(m) return "[" .. m[0] .. "," .. m[1] .. "]" end, "i"))', '"[hello,h], [world,w]" 2'),
            ('return show(proxy.re.gsub("hello, 1234", "[0-9]", "[$0]"))', '"hello, [1][2][3][4]" 4'),
            # Named groups, by ${name} and $name; a missing group is empty.
            ('return show(proxy.re.gsub("k1=v1 k2=v2", "(?<key>\\\\w+)=(?<val>\\\\w+)", "${val}=$key$9"))',
             '"v1=k1 v2=k2" 2'),
            # What the function returns goes in as it is: "$" is not special there.
            ('return show(proxy.re.gsub("ab", "b", function(m) return "$0" end))', '"a$0" 1'),
            ('return show(proxy.re.gsub("a1b2", "[0-9]", function(m) return tonumber(m[0]) * 2 end))',
             '"a2b4" 2'),
            # No match: the subject and 0.
            ('return show(proxy.re.gsub("hello", "[0-9]", "x"))', '"hello" 0'),
            ('return show(proxy.re.sub("hello", "l", "L"))', '"heLlo" 1'),
            # Empty matches, as OpenResty (and Perl) place them.
            ('return show(proxy.re.gsub("abc", "b*", "-"))', '"-a--c-" 4'),
            ('return show(proxy.re.gsub("", "x*", "-"))', '"-" 1'),
            ('return show(proxy.re.gsub("日本", "", "|", "u"))', '"|日|本|" 3'),
            # A function may use proxy.re itself, the same pattern included.
            ('return show(proxy.re.gsub("a.b.c", "\\\\.", function(m) '
             'return (proxy.re.gsub(m[0] .. "x.", "\\\\.", "!")) end))', '"a!x!b!x!c" 2'),
            # Bad templates: nil, nil, err, even without a match.
            ('return show(proxy.re.gsub("hello", "z", "a$"))',
             'nil nil "failed to compile the replacement template: a \'$\' at the end (\\"$$\\" is a \'$\')"'),
            ('return show(proxy.re.gsub("hello", "l", "${1"))',
             'nil nil "failed to compile the replacement template: the closing \'}\' of \\"${1\\" is missing"'),
            ('return show(proxy.re.gsub("hello", "l", "${nope}"))',
             'nil nil "failed to compile the replacement template: no group named \\"nope\\" in the pattern"'),
            ('return show(proxy.re.sub("x", "a)b", "y"))',
             'nil nil "pcre2_compile() failed: unmatched closing parenthesis in \\"a)b\\" at \\")b\\""'),
        ])
        # An error in the function is the caller's error.
        got = run(p, 'return show(pcall(proxy.re.gsub, "ab", "b", function() error("boom", 0) end))')
        assert got == 'false "boom"', got


def test_bad_regex_is_nil_and_the_compile_error():
    with lp.Proxy(SCRIPT) as p:
        check(p, [
            ('return show(proxy.re.match("x", "("))',
             'nil "pcre2_compile() failed: missing closing parenthesis in \\"(\\""'),
            ('return show(proxy.re.match("x", "a{2,1}"))',
             'nil "pcre2_compile() failed: numbers out of order in {} quantifier in \\"a{2,1}\\" at \\"}\\""'),
            # Twice: a failed compile is not cached as something else.
            ('return show(proxy.re.match("x", "("), proxy.re.match("(", "\\\\("))',
             'nil {[0]="("}'),
            # Duplicate names need "D".
            ('return show(proxy.re.match("ab", "(?<n>a)(?<n>b)"))',
             'nil "pcre2_compile() failed: two named subpatterns have the same name (PCRE2_DUPNAMES not set) '
             'in \\"(?<n>a)(?<n>b)\\" at \\"b)\\""'),
        ])


def test_subjects_and_patterns_with_nul_bytes():
    with lp.Proxy(SCRIPT) as p:
        check(p, [
            ('return show(proxy.re.match("a\\0b\\0c", "b\\0(c)"))', '{[0]="b\\0c",[1]="c"}'),
            ('return show(proxy.re.find("a\\0\\0b", "b"))', '4 4'),
            ('return show(proxy.re.gsub("a\\0b\\0", "\\0", "-"))', '"a-b-" 2'),
            ('return show(proxy.re.gsub("a\\0b", "b", "[$0]"))', '"a\\0[b]" 1'),
            # Not a string: made one as tostring() would, as OpenResty does.
            ('return show(proxy.re.gsub(12345, "3", "x"))', '"12x45" 1'),
        ])


def test_utf8_mode_checks_the_subject():
    with lp.Proxy(SCRIPT) as p:
        check(p, [
            ('return show(proxy.re.match("\\255abc", "abc", "u"))',
             'nil "pcre2_match() failed: UTF-8 error: illegal byte (0xfe or 0xff) (-23)"'),
            ('return show(proxy.re.match("\\255abc", "abc"))', '{[0]="abc"}'),
            ('return show(proxy.re.match("日本語", "^.", "u"), #proxy.re.match("日本語", "^.")[0])',
             '{[0]="日"} 1'),
        ])


def test_catastrophic_backtracking_is_bounded():
    # A match is one C call that --lua-time-limit cannot stop: PCRE2's match
    # limit ends it with an error, and the worker goes on serving.
    with lp.Proxy(SCRIPT) as p:
        t0 = time.monotonic()
        got = run(p, 'return show(proxy.re.match(string.rep("a", 40) .. "b", "^(a+)+$"))')
        took = time.monotonic() - t0
        assert got == 'nil "pcre2_match() failed: match limit exceeded (-47)"', got
        assert took < 2.0, "the pathological match took %.2fs" % took
        check(p, [('return show(proxy.re.match("aaa", "^(a+)+$"))', '{[0]="aaa",[1]="aaa"}')])


def worker_rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS for %d" % pid)


FLOOD = r'''
local n = N
local tail = string.rep("|[a-j]{2}(?:abc|def|ghi)x+", 20)
for i = 1, n do
  local m = proxy.re.match("kz", "(kz)|" .. i .. tail)
  if not m or m[1] ~= "kz" then error("match " .. i .. " gave " .. tostring(m and m[1])) end
end
collectgarbage()
return tostring(n)
'''


def test_cache_is_bounded_and_evicted_patterns_in_use_survive():
    # 5,000 compilations in one call: on a loaded machine that can pass the
    # default 1 s time limit, which is not what this test is about.
    with lp.Proxy(SCRIPT, args=["--lua-time-limit", "20s"]) as p:
        [worker] = p.wait_workers(1)
        # Distinct patterns, each compiled and JIT-compiled: the cache keeps
        # at most about a thousand, the rest is collected.
        assert run(p, FLOOD.replace("N", "3000")) == "3000"
        before = worker_rss_kb(worker)
        for _ in range(4):
            assert run(p, FLOOD.replace("N", "5000")) == "5000"
        grown = worker_rss_kb(worker) - before
        # (AddressSanitizer keeps freed memory in quarantine: RSS says nothing there.)
        if not lp.sanitized():
            assert grown < 16 * 1024, "20000 one-off patterns grew the worker by %d KiB" % grown
        # A gsub whose function pushes its own pattern out of the cache (and
        # the collector runs) still finishes with it.
        got = run(p, 'local k = 0; local s, n = proxy.re.gsub("a-b-c-d", "-", function(m) '
                     '  for i = 1, 1500 do k = k + 1; proxy.re.find("x", "x" .. k .. "|y") end; '
                     '  collectgarbage(); return "+" end); return show(s, n)')
        assert got == '"a+b+c+d" 3', got
        # And a gmatch iterator, kept across such a flood.
        got = run(p, 'local it = proxy.re.gmatch("1 2 3", "[0-9]"); local a = it()[0]; '
                     'for i = 1, 1500 do proxy.re.find("x", "z" .. i .. "|x") end; collectgarbage(); '
                     'return show(a, it()[0], it()[0], it())')
        assert got == '"1" "2" "3" nil', got
        # A pattern in steady use survives the flood: still right after it.
        check(p, [('return show(proxy.re.match("hello, 1234", "[0-9]+"))', '{[0]="1234"}')])
