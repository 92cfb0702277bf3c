-- wrk script of the mirroring case: every request a POST of a 1 MiB body.
wrk.method = "POST"
wrk.body = string.rep("0123456789abcdef", 65536)
wrk.headers["Content-Type"] = "application/octet-stream"
