/* script: the narrow interface between the C core and the per-worker LuaJIT
 * state. core/ calls only these functions and never includes a Lua header.
 *
 * A request is seen by Lua through a struct script_view that the core owns
 * and keeps up to date (its pointers move when the read buffer grows); the
 * Lua `req` object refers to it until script_req_end(). */
#pragma once
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "http.h"

struct shm;
struct upstream;

struct script_view {
    const struct http_request *req;
    const char *base; /* the bytes the request's slices refer to */
    const char *body; /* local handlers: the whole body */
    size_t body_len;
    bool body_ready; /* the body was read: req.body is a string, not nil */
    const struct sockaddr *peer;
};

struct script_header {
    const char *name, *value;
    size_t nlen, vlen;
};

/* A response produced by Lua. Its strings belong to the Lua state and stay
 * valid until script_reply_done(). */
struct script_reply {
    int status;
    const char *body;
    size_t body_len;
    struct script_header *headers;
    size_t nheaders;
    bool head_only; /* HEAD answered through on_get */
};

enum script_decision {
    SCRIPT_LOCAL,    /* route returned nothing: on_<method> handles it */
    SCRIPT_RESPOND,  /* route answered (or failed: a 500 reply) */
    SCRIPT_UPSTREAM, /* proxy to *upstream */
};

struct script_req; /* the Lua side of one request */

/* Once per process, before any state: limits and the shared memory. */
void script_setup(const struct config *cfg, struct shm *shm, int worker_id, int worker_count);
/* Builds the worker's state from path (runs its top level). 0, or -1 with
 * "file:line: message" in err. */
int script_load(const char *path, char *err, size_t errlen);
/* Loads path in a scratch state and throws it away (--check, and the
 * master before start and reload). */
int script_check(const char *path, char *err, size_t errlen);
void script_unload(void);

struct script_req *script_req_begin(struct script_view *view);
void script_req_end(struct script_req *r);

enum script_decision script_route(struct script_req *r, struct script_reply *reply,
                                  struct upstream **upstream);
/* Runs on_<method> (or answers 405); always fills reply. */
void script_handle(struct script_req *r, struct script_reply *reply);
/* Releases the Lua values a reply points into. */
void script_reply_done(void);
/* Whether the script defines route() (otherwise the core skips the call). */
bool script_has_route(void);

/* ---- proxying ---- */

/* What req:set_header/set_path/set_query changed, for the forwarded head.
 * A header with value NULL is removed. Valid until script_reply_done(). */
struct script_edits {
    bool path_set, query_set;
    const char *path, *query; /* query NULL: removed */
    size_t path_len, query_len;
    struct script_header *headers;
    size_t nheaders;
};
/* false (and nothing to do) when the script changed nothing. */
bool script_req_edits(struct script_req *r, struct script_edits *e);

/* The upstream's hash_key(req), hashed; 0 when it gives nil or fails. */
uint32_t script_hash_key(struct script_req *r, struct upstream *u);
/* The upstream's balance(req, servers). NULL: nothing chosen (503). */
struct server *script_balance(struct script_req *r, struct upstream *u, const bool *tried);

/* The response head as on_response sees it. */
struct script_response {
    int status;
    const struct http_header *headers;
    uint16_t nheaders;
    const char *base;
    const char *server;
};
bool script_has_on_response(void);
/* Runs on_response(req, res); its res:set_header edits come back in e
 * (valid until script_reply_done()). false when it failed (logged). */
bool script_on_response(struct script_req *r, const struct script_response *res,
                        struct script_edits *e);
/* Frees the upstreams the state declared. */
void script_free_upstreams(void);

/* --try: every script error (runtime error, time or memory limit, bad
 * return value) goes to fn instead of the error log. msg is the error with
 * its traceback. NULL restores logging. */
void script_set_error_hook(void (*fn)(const char *where, const char *msg));
