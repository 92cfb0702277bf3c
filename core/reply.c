#include "reply.h"

#include <errno.h>

#include "http_response.h"

int reply_write(struct buf *out, const struct http_request *req, const struct script_reply *rep, bool keep_alive,
                double wall_now, bool *kept)
{
    struct http_response r = {
        .status = rep->status,
        .keep_alive = keep_alive && rep->status >= 200,
        .http10 = req->http_minor == 0,
        .head_only = rep->head_only || req->method == HTTP_HEAD,
    };
    *kept = r.keep_alive;
    int rc = http_response_begin(out, &r);
    for (size_t i = 0; !rc && i < rep->nheaders; i++) {
        const struct script_header *h = &rep->headers[i];
        if (http_response_header(out, &r, h->name, h->nlen, h->value, h->vlen) < 0) rc = -ENOMEM;
    }
    if (!rc) rc = http_response_end(out, &r, wall_now, rep->body, rep->body_len);
    return rc ? -ENOMEM : 0;
}
