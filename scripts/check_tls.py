#!/usr/bin/env python3
"""make check-tls: testssl.sh against a luaproxy HTTPS listener.

Starts $LUAPROXY (default build/luaproxy) with --tls-listen on a free
loopback port and the test certificate of tests/helpers/tlscerts.py (ECDSA
P-256, served with its intermediate; the root is handed to testssl.sh with
--add-ca, so the chain of trust is judged as it would be for a public CA),
runs `testssl --fast` with its JSON output, and fails when any finding is
rated HIGH or CRITICAL, or when luaproxy did not survive the scan.

    python3 scripts/check_tls.py [--keep-json PATH]

Exit status: 0 clean, 1 findings (printed), 2 the scan could not run.
The scan takes about a minute; TESTSSL_TIMEOUT (seconds, default 300)
bounds it.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests", "helpers"))

import lp  # noqa: E402
import tlscerts  # noqa: E402

FAIL = ("HIGH", "CRITICAL")
SHOW = ("MEDIUM", "HIGH", "CRITICAL", "WARN", "FATAL")

SCRIPT = '''
function on_get(req)
  return 200, "hello over " .. req.scheme .. "\\n",
         { ["content-type"] = "text/plain", ["strict-transport-security"] = "max-age=31536000" }
end
'''


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--keep-json", help="copy testssl's JSON findings here")
    args = ap.parse_args()
    exe = shutil.which("testssl") or shutil.which("testssl.sh")
    if not exe:
        print("check-tls: testssl is not installed (bash scripts/deps.sh tls)", file=sys.stderr)
        return 2
    certs = tlscerts.certs()
    work = tempfile.mkdtemp(prefix="lp-check-tls-")
    out_json = os.path.join(work, "testssl.json")
    try:
        p = tlscerts.tls_proxy(SCRIPT, certs.path("localhost"), workers=2)
        workers = p.wait_workers(2)
        url = "https://%s:%d/" % (lp.HOST, p.tls_port)
        print("check-tls: testssl --fast against %s (luaproxy pid %d)" % (url, p.pid), flush=True)
        cmd = [exe, "--quiet", "--fast", "--warnings", "off", "--color", "0", "--ip", "one",
               "--connect-timeout", "5", "--openssl-timeout", "5", "--add-ca", certs.ca,
               "--jsonfile", out_json, url]
        limit = int(os.environ.get("TESTSSL_TIMEOUT", "300"))
        try:
            run = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 timeout=limit, start_new_session=True)
        except subprocess.TimeoutExpired:
            print("check-tls: testssl did not finish within %d s" % limit, file=sys.stderr)
            return 2
        alive = p.alive() and p.worker_pids() == workers
        p.kill()
        if not os.path.exists(out_json):
            sys.stdout.write(run.stdout.decode("utf-8", "replace")[-3000:])
            print("check-tls: testssl wrote no JSON (exit %d)" % run.returncode, file=sys.stderr)
            return 2
        with open(out_json) as f:
            findings = json.load(f)
        if args.keep_json:
            shutil.copyfile(out_json, args.keep_json)
        counts = {}
        for x in findings:
            counts[x.get("severity", "?")] = counts.get(x.get("severity", "?"), 0) + 1
        print("check-tls: %d findings: %s" % (len(findings), ", ".join("%s %d" % kv for kv in sorted(counts.items()))))
        bad = []
        for x in findings:
            sev = x.get("severity", "")
            if sev in SHOW:
                print("  %-8s %-28s %s" % (sev, x.get("id", ""), x.get("finding", "")[:150]))
            if sev in FAIL:
                bad.append(x)
        if not alive:
            print("check-tls: luaproxy or a worker died during the scan; stderr:\n%s" % p.stderr_text()[-3000:])
            return 1
        if bad:
            print("check-tls: FAIL, %d finding(s) rated HIGH or CRITICAL" % len(bad))
            return 1
        print("check-tls: ok, nothing rated HIGH or CRITICAL")
        return 0
    finally:
        lp.cleanup_all()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
