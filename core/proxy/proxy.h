/* proxy: the inside of an exchange, shared by the files that carry it out.
 * Nothing outside them includes this header; the seam to the client is
 * exchange.h.
 *
 *   exchange.c   the top: start, timer, driving on events
 *   ending.c     the bottom: memory, phases (ex_enter), errors, the end
 *   backend.c    choosing a server, connecting, the pool, sending the
 *                request, retries
 *   response.c   reading the response head, deciding how the body
 *                travels, relaying it
 *   tunnel.c     after a 101: bytes both ways
 *   proxy_head.c the request and response heads as they are forwarded
 *
 * Request side:  head (rewritten, plus the body bytes that came with it) in
 *                one send; the rest of a Content-Length body spliced from
 *                the client's transport; a chunked body raw, as the client's
 *                parser checks it.
 * Response side: the head is read into resp_buf and parsed, shown to
 *                on_response, rewritten into the client's output; a
 *                Content-Length body is then spliced, a chunked one relayed
 *                as it is, an unframed one re-chunked for HTTP/1.1 clients.
 * Failures before the first response byte are retried when that is safe;
 * after the response head went out, the client connection is closed. */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include <llhttp.h>

#include "buf.h"
#include "exchange.h"
#include "http.h"
#include "log.h"
#include "pool.h"
#include "splice.h"
#include "timer.h"
#include "script.h"
#include "upstream.h"
#include "upstream_set.h"

#define RESP_HEAD_MAX (64 * 1024) /* a larger backend head is a 502 */
#define RESP_READ 16384           /* read size for relayed (non-spliced) bodies */

/* The phases of an exchange, in the order they come. Each transition goes
 * through ex_enter (exchange.c), which also arms the phase's timer. The
 * request body may still be streaming when the response head comes (a
 * backend can answer early): req_done tracks that side on its own.
 * EX_SCRIPT is the response's wait on the script: on_response waiting on a
 * socket or a timer (route waits before the exchange begins, in conn.c). */
enum ex_phase {
    EX_CHOOSING,      /* picking a server (the balancer) */
    EX_CONNECTING,    /* a non-blocking connect is in progress */
    EX_SENDING_HEAD,  /* the head, and the body bytes that came with it, go out */
    EX_SENDING_BODY,  /* the rest of the request body streams to the backend */
    EX_WAITING,       /* the request went out: waiting for the response head */
    EX_SCRIPT,        /* the response head came; on_response waits (a socket, a timer) */
    EX_RELAYING,      /* the response head is queued; its body streams back */
    EX_TUNNEL,        /* after a 101: bytes both ways until both sides close */
    EX_DONE,
};

enum body_mode {
    RB_NONE,    /* no body (HEAD, 1xx, 204, 304, or Content-Length: 0) */
    RB_LENGTH,  /* Content-Length: spliced */
    RB_CHUNKED, /* relayed as received, parsed to find its end */
    RB_EOF,     /* until the backend closes; re-chunked for 1.1 clients */
};

struct exchange {
    struct http_parse_ctx pctx; /* first: the response parser's data */
    const struct exchange_client *cl; /* the client's calls, */
    void *client;                     /* and its pointer for them */
    struct exchange_request rq;
    struct script_response sres;      /* what on_response sees, while it runs */
    struct buf *out;                  /* the client's output (cl->out) */
    struct upstream *up;
    struct server *srv;
    struct bconn *b;
    enum ex_phase phase;
    struct timer timer; /* connect_timeout, then read_timeout */
    bool *tried;        /* servers attempted, by index */
    int tried_cap;
    uint32_t tried_gen; /* the upstream's servers_gen that tried indexes */
    uint8_t epoch;      /* of the grace period it counts in (upstream_set.h) */
    int attempts;
    bool reused;           /* b came from the pool */
    bool fresh_retry_done; /* the one retry after a stale pooled connection */
    bool restart;          /* backend_failed moved to a pooled connection: run on */
    /* exchange.c's handler of the backend connection's events, given to
     * each connection the exchange takes (backend.c). */
    void (*on_backend_event)(struct bconn *b, unsigned events);
    bool upgrade;          /* the client asked for Connection: upgrade */
    uint64_t started_us;
    int status;           /* answered to the client (backend's or ours) */
    uint64_t spliced;     /* response body bytes spliced to the client */

    /* request */
    struct buf req_head;  /* rewritten head + body bytes that came with it */
    uint64_t req_left;    /* Content-Length bytes still in the client socket */
    bool req_chunked;     /* relaying a chunked body */
    bool chunk_pending;   /* ... and checked bytes of it wait for the backend */
    bool req_done;        /* everything was written to the backend */
    bool req_started;     /* a body byte left the client socket: no replay */
    bool req_wrote;       /* a byte of the request went to a backend connection */
    bool interim_seen;    /* the backend sent a 1xx (100 Continue) */
    struct pipe_pair req_pipe;

    /* response */
    llhttp_t rp;
    struct http_request resp; /* its headers, as slices of resp_buf; url = reason */
    struct buf resp_buf;
    size_t resp_parsed;
    bool resp_head_done, resp_message_done, resp_skip_body;
    bool own_answer;      /* the response is ours (ex_error), queued whole */
    bool head_unflushed;  /* ... at out[head_at], with nothing written since */
    size_t head_at;
    enum body_mode mode;
    uint64_t resp_left;
    bool resp_done;
    bool backend_reusable;
    bool client_close;    /* the client connection ends after this response */
    bool chunk_out;       /* re-chunking an unframed body */
    bool dechunk;         /* an HTTP/1.0 client: a chunked body goes out decoded */
    struct pipe_pair resp_pipe;
    struct pipe_pair up_pipe; /* tunnel: client -> backend */
    bool tun_client_eof, tun_backend_eof;
    struct exchange *next_free;
};

/* ending.c: memory, phases, and the end; every file of the wing calls it */
/* An exchange from the pool, zeroed but for its buffers; back with ex_put. */
struct exchange *ex_get(void);
void ex_put(struct exchange *ex);
/* The client goes: report, release, and let it close (cl->failed). */
void ex_drop_client(struct exchange *ex, bool answered);
/* Moves to phase p, (re)arming or cancelling the exchange's timer. */
void ex_enter(struct exchange *ex, enum ex_phase p);

/* A response head (the backend's or ours) is queued for the client. */
static inline bool ex_head_sent(const struct exchange *ex)
{
    return ex->phase >= EX_RELAYING;
}
/* Ends the exchange; the client takes over again (cl->done). */
void ex_finish(struct exchange *ex);
/* Closes the client after a failure past the response head, or when it
 * went away (level: LOG_INFO or LOG_DEBUG for the client's doing). */
void ex_close_client(struct exchange *ex, enum log_level level, const char *why);
void ex_abort_client(struct exchange *ex, const char *why);
/* Answers the client ourselves (400, 408, 500, 502, 503, 504), or closes
 * it when a response head already went out. */
void ex_error(struct exchange *ex, int status, const char *why);
/* Gives up the backend connection: to the pool when reusable. */
void ex_release_backend(struct exchange *ex, bool reusable);

/* backend.c */
bool backend_ensure_tried(struct exchange *ex);
/* Picks the next server and starts on it; 502/503 when none is left.
 * true: it took a pooled connection, ready: the caller runs the exchange. */
bool backend_try_server(struct exchange *ex);
/* The connect finished; or it failed (its SO_ERROR), and the exchange
 * moved on: true as for backend_try_server. */
void backend_connected(struct exchange *ex);
bool backend_connect_failed(struct exchange *ex, int err);
/* A connection failed before any response byte: retry or answer. A retry
 * on a pooled connection sets ex->restart: the caller returns "stopped"
 * and ex_run goes on. */
void backend_failed(struct exchange *ex, const char *why);
/* Sends what is left of the request. false when the exchange ended. */
bool backend_send_request(struct exchange *ex);

/* response.c */
void response_init(struct exchange *ex);
/* Reads and handles the response head. false when the exchange ended. */
bool response_read_head(struct exchange *ex);
/* Relays the body until blocked. false when the exchange ended. */
bool response_relay(struct exchange *ex);
/* on_response, which waited, is over: the head goes out. false when the
 * exchange ended. */
bool response_script_ready(struct exchange *ex);

/* tunnel.c */
/* The response head (a 101) went out: bytes the client sent after its
 * request go first, then both ways. */
void tunnel_start(struct exchange *ex);
void tunnel_run(struct exchange *ex);
