/* reply: a script's answer (struct script_reply) written out as HTTP: the
 * one way a client connection and --try both write it. */
#pragma once
#include <stdbool.h>

#include "buf.h"
#include "http.h"
#include "script.h"

/* Appends rep as the answer to req. keep_alive: the connection may stay
 * open after it (the answer then says so to an HTTP/1.0 client; a 1xx never
 * keeps it). Returns 0 with *kept set to whether the head announced
 * keep-alive, or -ENOMEM. */
int reply_write(struct buf *out, const struct http_request *req, const struct script_reply *rep, bool keep_alive,
                double wall_now, bool *kept);
