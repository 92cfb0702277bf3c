"""SPEC §7: examples/kvstore.lua, and proxy.shared across workers."""

import threading

import lp

KVSTORE = "examples/kvstore.lua"


def test_kvstore_crud():
    with lp.Proxy(KVSTORE) as p:
        r = lp.post(p.port, "/a/b", b"hello", headers={"Content-Type": "text/plain"})
        assert r.status == 201, r
        r = lp.post(p.port, "/a/b", b"hello again", headers={"Content-Type": "text/x-again"})
        assert r.status == 200, r
        r = lp.get(p.port, "/a/b")
        assert r.status == 200 and r.body == b"hello again", r
        assert r.headers.get("content-type") == "text/x-again", r
        lp.expect(lp.get(p.port, "/missing"), 404)
        lp.expect(lp.get(p.port, "/a"), 404)
        r = lp.request(p.port, "DELETE", "/a/b")
        assert r.status == 204 and r.body == b"", r
        lp.expect(lp.request(p.port, "DELETE", "/a/b"), 404)
        lp.expect(lp.get(p.port, "/a/b"), 404)


def test_kvstore_default_content_type():
    with lp.Proxy(KVSTORE) as p:
        lp.expect(lp.post(p.port, "/untyped", b"raw"), 201)
        r = lp.get(p.port, "/untyped")
        assert r.status == 200 and r.body == b"raw", r
        assert r.headers.get("content-type") == "application/octet-stream", r


def test_kvstore_binary_and_empty_values():
    blob = bytes(range(256)) * 40 + b"\n\r\n\x00tail"
    with lp.Proxy(KVSTORE) as p:
        lp.expect(lp.post(p.port, "/bin", blob, headers={"Content-Type": "application/x-blob"}), 201)
        r = lp.get(p.port, "/bin")
        assert r.status == 200 and r.body == blob, "binary value changed (%d bytes back)" % len(r.body)
        assert r.headers.get("content-type") == "application/x-blob", r
        lp.expect(lp.post(p.port, "/empty", b""), 201)
        r = lp.get(p.port, "/empty")
        assert r.status == 200 and r.body == b"" and r.headers.get("content-length") == "0", r


def test_kvstore_query_is_not_part_of_key():
    with lp.Proxy(KVSTORE) as p:
        lp.expect(lp.post(p.port, "/q?x=1", b"v"), 201)
        r = lp.get(p.port, "/q?y=2")
        assert r.status == 200 and r.body == b"v", r


def test_shared_across_workers_fresh_connections():
    value = b"".join(b"%06d," % i for i in range(1500))  # ~10 KiB
    with lp.Proxy(KVSTORE, workers=2) as p:
        workers = p.wait_workers(2)
        with lp.conn_on_worker(p, workers[0]) as c:
            lp.expect(c.request("POST", "/shared/key", value, headers={"Content-Type": "text/csv"}), 201)
        # Fresh connections, half of them on the worker that did not write.
        for i in range(40):
            with lp.conn_on_worker(p, workers[i % 2]) as c:
                r = c.request("GET", "/shared/key")
            assert r.status == 200 and r.body == value, "read %d (worker %d): %r" % (i, workers[i % 2], r)
            assert r.headers.get("content-type") == "text/csv", r


COUNTER = r'''
local d = proxy.shared("counter")
function on_post(req)
  local n, err = d:incr("n", 1, 0)
  if not n then return 500, tostring(err) end
  return 200, string.format("%d %d", n, proxy.worker_id)
end
function on_get(req) return 200, tostring(d:get("n")) end
'''


def test_concurrent_incr_exact():
    threads, per_thread = 8, 250
    with lp.Proxy(COUNTER, workers=2) as p:
        p.wait_workers(2)
        seen, workers, errors = [], set(), []
        lock = threading.Lock()

        def client():
            try:
                mine = []
                for _ in range(per_thread):
                    r = lp.post(p.port, "/incr", b"")
                    if r.status != 200:
                        raise AssertionError("incr answered %r" % r)
                    n, w = r.body.split()
                    mine.append((int(n), w))
                with lock:
                    seen.extend(n for n, _ in mine)
                    workers.update(w for _, w in mine)
            except Exception as e:
                with lock:
                    errors.append(repr(e))
        ts = [threading.Thread(target=client) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(50)
        assert not errors, errors[:3]
        total = threads * per_thread
        assert len(seen) == total, "%d answers" % len(seen)
        r = lp.get(p.port, "/")
        assert r.body == str(total).encode(), "counter is %r after %d increments" % (r.body, total)
        assert sorted(seen) == list(range(1, total + 1)), "incr returned duplicate or missing values"
        assert len(workers) == 2, "all increments were served by worker %r" % workers
