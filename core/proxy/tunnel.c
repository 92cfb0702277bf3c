/* tunnel: after a 101 Switching Protocols, the exchange carries bytes both
 * ways, spliced, until each side has closed its half; a FIN from one side
 * is passed on to the other as a shutdown of writing. */
#include "proxy.h"

#include <errno.h>

#include "stats.h"
#include "worker_state.h"

void tunnel_start(struct exchange *ex)
{
    ex_enter(ex, EX_TUNNEL);
    ex->backend_reusable = false;
    ex->client_close = true;
    /* Bytes the backend sent after its 101 belong to the tunnel, and so do
     * those the client sent after its request: they go first. */
    buf_append(ex->out, ex->resp_buf.data + ex->resp_parsed, ex->resp_buf.len - ex->resp_parsed);
    ex->resp_buf.len = ex->resp_parsed = 0;
    ex->req_head.len = ex->req_head.off = 0;
    ex->cl->body_take(ex->client, &ex->req_head, UINT64_MAX);
}

void tunnel_run(struct exchange *ex)
{
    struct transport *bt = &ex->b->tp, *ct = ex->rq.transport;
    if (buf_pending(ex->out)) {
        if (ex->cl->flush(ex->client) < 0) return;
        if (buf_pending(ex->out)) return;
    }
    struct buf *early = &ex->req_head;
    if (buf_pending(early)) {
        ssize_t n = transport_write(bt, early->data + early->off, buf_pending(early));
        if (n > 0) early->off += (size_t)n;
        if (buf_pending(early)) {
            loop_mod(&W.loop, &bt->io, IO_READ | IO_WRITE);
            if (n == -1 && errno != EAGAIN) return ex_abort_client(ex, "tunnel closed");
            return;
        }
    }
    if ((ex->resp_pipe.rd == -1 && pipe_take(&ex->resp_pipe)) || (ex->up_pipe.rd == -1 && pipe_take(&ex->up_pipe)))
        return ex_abort_client(ex, "no pipe for the tunnel");
    uint64_t moved = 0;
    if (!ex->tun_backend_eof) {
        enum pump_result r = transport_stream(bt, ct, &ex->resp_pipe, &moved);
        if (r == PUMP_WANT_WRITE) ex->cl->want_write(ex->client);
        if (r == PUMP_EOF) {
            ex->tun_backend_eof = true;
            transport_shutdown(ct);
        }
        if (r == PUMP_ERROR) ex->tun_backend_eof = ex->tun_client_eof = true;
    }
    if (!ex->tun_client_eof) {
        enum pump_result r = transport_stream(ct, bt, &ex->up_pipe, &moved);
        if (r == PUMP_WANT_WRITE) loop_mod(&W.loop, &bt->io, IO_READ | IO_WRITE);
        if (r == PUMP_EOF) {
            ex->tun_client_eof = true;
            transport_shutdown(bt);
        }
        if (r == PUMP_ERROR) ex->tun_backend_eof = ex->tun_client_eof = true;
    }
    if (transport_can_splice(ct, bt)) STAT_ADD(WS->spliced_bytes, moved);
    if (ex->tun_backend_eof && ex->tun_client_eof) {
        ex->resp_done = true;
        ex->req_done = true;
        ex_finish(ex);
    }
}
