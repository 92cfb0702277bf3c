/* limit: --lua-time-limit and --lua-memory-limit. */
#pragma once
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What limit_alloc counts for one state (its ud). */
struct limit_mem {
    size_t used, limit;
    bool enforce; /* only user code is refused memory, never our own setup */
};

void *limit_alloc(void *ud, void *ptr, size_t osize, size_t nsize);
/* Starts the watchdog of the calling (worker) process. */
int limit_watchdog_start(lua_State *L, uint64_t limit_ms);
/* Brackets a call into user code. */
void limit_enter(lua_State *L);
/* The same for one stretch of a hook that waits: spent_ms of Lua time it
 * already ran count against the limit (SPEC: the stretches are added up). */
void limit_enter_spent(lua_State *L, uint64_t spent_ms);
/* Inside a call: its Lua time so far, earlier stretches included. Read it
 * before limit_leave. */
uint64_t limit_spent(void);
/* Returns true when the call was stopped by the time limit. */
bool limit_leave(lua_State *L);
/* For top-level code (load, check): a count hook checking the clock. */
void limit_hook_clock(lua_State *L, uint64_t limit_ms);
void limit_unhook(lua_State *L);
