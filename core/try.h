/* try: `luaproxy --try "GET /path" SCRIPT.lua`, a routing dry run. */
#pragma once
#include "config.h"

/* Loads the script, runs one request built from cfg->try_* through it
 * without any network, prints the decision on stdout. Returns the exit
 * status: 0, or 2 with one line on stderr for a bad --try/--header value or
 * a script error. script_setup() must have been called. */
int try_run(const struct config *cfg);
