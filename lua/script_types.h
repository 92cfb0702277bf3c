/* script_types: the values the core and the Lua side hand each other, apart
 * from script.h so that the files of lua/ below script.c can use them
 * without depending on the file that calls them. No Lua header here: the
 * core includes it through script.h. */
#pragma once
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

#include "http.h"

struct script_view {
    const struct http_request *req;
    const char *base; /* the bytes the request's slices refer to */
    const char *body; /* local handlers: the whole body */
    size_t body_len;
    bool body_ready; /* the body was read: req.body is a string, not nil */
    const struct sockaddr *peer;
    /* Came over TLS: req.scheme "https", req.tls = { version, cipher, sni }
     * (OpenSSL's names; sni NULL when the client sent none). */
    bool https;
    struct {
        const char *version, *cipher, *sni;
    } tls;
    /* A hook that waited (script_route or script_handle said SCRIPT_WAIT)
     * is over: the core calls script_route_resume / script_handle_resume.
     * Set by the core; called from the worker's loop, never from inside
     * the hook's own call. */
    void (*ready)(struct script_view *v);
};

struct script_header {
    const char *name, *value;
    size_t nlen, vlen;
};

/* What req:set_header/set_path/set_query changed, for the forwarded head.
 * A header with value NULL is removed. Valid until script_reply_done(). */
struct script_edits {
    bool path_set, query_set;
    const char *path, *query; /* query NULL: removed */
    size_t path_len, query_len;
    struct script_header *headers;
    size_t nheaders;
};

/* The response head as on_response sees it. */
struct script_response {
    int status;
    const struct http_header *headers;
    uint16_t nheaders;
    const char *base;
    const char *server;
};
