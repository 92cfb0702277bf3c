/* balance: choosing the server for a request, the one step that live
 * traffic (forward) and the dry run (--try) share. It sits above both the
 * upstream table and the script, so that neither has to know the other:
 * the script's balance function, or a built-in policy of upstream.c with
 * the script's hash_key for "hash". */
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "upstream.h"

struct script_req;

/* 0 with the server in *s (NULL: none is available, a 503), or -1 when the
 * script's hook failed (logged; a 500). tried (may be NULL) marks servers
 * already attempted. */
int balance_choose(struct script_req *sr, struct upstream *u, const bool *tried, uint64_t now,
                   struct server **s);
