/* script: the narrow interface between the C core and the per-worker LuaJIT
 * state. core/ calls only these functions and never includes a Lua header.
 *
 * A request is seen by Lua through a struct script_view that the core owns
 * and keeps up to date (its pointers move when the read buffer grows); the
 * Lua `req` object refers to it until script_req_end(). That struct and the
 * others both sides fill (edits, response head) are in script_types.h. */
#pragma once
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "http.h"
#include "script_types.h"

struct loop;
struct shm;
struct upstream;
struct server;

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
    SCRIPT_WAIT,     /* the hook waits (a timer, a socket): view->ready says when it is over */
};

struct script_req; /* the Lua side of one request */

/* Once per process, before any state: limits, the shared memory, and the
 * worker's event loop (NULL outside a worker: --check, --try, the master),
 * which retiring states and proxy.now use. */
void script_setup(const struct config *cfg, struct shm *shm, int worker_id, int worker_count, struct loop *loop);
/* Reads a script file (malloc'd, NUL-terminated); NULL with "cannot open
 * path: reason" in err. */
char *script_read(const char *path, size_t *len, char *err, size_t errlen);
/* Builds a state from text (errors name path) and makes it the one new
 * requests begin on. The previous state, if any, is retired: requests begun
 * on it finish there, and it is closed when the last of them ends. Pooled
 * connections of servers (same upstream name and address) move over.
 * 0, or -1 with "file:line: message" in err (the current state stays). */
int script_load(const char *path, const char *text, size_t len, int generation, char *err, size_t errlen);
/* Loads path (or text) in a scratch state and throws it away (--check, and
 * the master before start and reload). */
int script_check(const char *path, char *err, size_t errlen);
int script_check_text(const char *path, const char *text, size_t len, char *err, size_t errlen);
/* A graceful shutdown begins: pending timers run once, premature. */
void script_shutdown(void);
/* Closes every state. */
void script_unload(void);
/* The generation of the current state (proxy.generation). */
int script_generation(void);
/* The upstreams of the current state (for /status). */
const struct upstream *script_upstreams(void);

struct script_req *script_req_begin(struct script_view *view);
void script_req_end(struct script_req *r);

enum script_decision script_route(struct script_req *r, struct script_reply *reply,
                                  struct upstream **upstream);
/* After SCRIPT_WAIT: route's decision, as script_route gives it. */
enum script_decision script_route_resume(struct script_req *r, struct script_reply *reply,
                                         struct upstream **upstream);
/* Runs on_<method> (or answers 405) and fills reply; false when the
 * handler waits (view->ready, then script_handle_resume fills it). */
bool script_handle(struct script_req *r, struct script_reply *reply);
void script_handle_resume(struct script_req *r, struct script_reply *reply);
/* Releases the Lua values a reply points into. */
void script_reply_done(void);
/* Whether the request's script defines route() (otherwise the core skips
 * the call) and on_response(). */
bool script_has_route(struct script_req *r);
bool script_has_on_response(struct script_req *r);

/* ---- proxying ---- */

/* false (and nothing to do) when the script changed nothing. */
bool script_req_edits(struct script_req *r, struct script_edits *e);

/* Runs on_response(req, res): 1 with its res:set_header edits in e
 * (valid until script_reply_done()); 0 when it failed (logged); -1 when
 * it waits: res must stay valid until view->ready, then
 * script_on_response_resume gives the same 1 or 0. */
int script_on_response(struct script_req *r, const struct script_response *res,
                        struct script_edits *e);
int script_on_response_resume(struct script_req *r, struct script_edits *e);

/* --try: every script error (runtime error, time or memory limit, bad
 * return value) goes to fn instead of the error log. msg is the error with
 * its traceback. NULL restores logging. */
void script_set_error_hook(void (*fn)(const char *where, const char *msg));
