/* ltimer: proxy.timer.at/every. A timer's callback runs in a coroutine of
 * its own (an lrun run), where it may wait. Timers belong to the script
 * generation that made them and hold a reference on its state, as their
 * runs do, so a retired generation lives until its last run is over. */
#pragma once
#include <lua.h>

struct lstate;

/* Adds proxy.timer to the proxy module (the global). */
void ltimer_open(lua_State *L);
/* A reload retired st, or the worker shuts down: st's pending timers run
 * once now with premature = true and are not scheduled again. */
void ltimer_retire(struct lstate *st);
/* st is being closed (a failed load, or the end of the worker): its timers
 * go without running. */
void ltimer_forget(struct lstate *st);
/* Pending timers of the worker (proxy.timer.pending()). */
int ltimer_pending(void);
