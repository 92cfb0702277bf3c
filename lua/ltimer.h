/* ltimer: proxy.timer.at/every and proxy.sleep, the first Lua that waits.
 *
 * A timer's callback runs in a coroutine of its own (a "run"); a call that
 * waits (proxy.sleep) yields the coroutine, the worker's loop serves
 * everything else, and a loop timer resumes it. --lua-time-limit counts each
 * stretch between two waits, not the wait. Timers and runs belong to the
 * script generation that made them and hold a reference on its state, so a
 * retired generation lives until its last run is over. */
#pragma once
#include <lua.h>

struct lstate;

/* Adds proxy.timer and proxy.sleep to the proxy module (the global). */
void ltimer_open(lua_State *L);
/* A reload retired st, or the worker shuts down: st's pending timers run
 * once now with premature = true and are not scheduled again. */
void ltimer_retire(struct lstate *st);
/* st is being closed (a failed load, or the end of the worker): its timers
 * and runs go without running. */
void ltimer_forget(struct lstate *st);
/* Pending timers of the worker (proxy.timer.pending()). */
int ltimer_pending(void);
