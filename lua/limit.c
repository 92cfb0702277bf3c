/* limit: --lua-time-limit and --lua-memory-limit.
 *
 * Time. LuaJIT never runs debug hooks inside compiled traces, so a hook
 * alone cannot stop `while true do end` once the loop is hot. The worker's
 * states therefore run with the JIT engine off, and nothing is hooked while
 * calls behave: a watchdog thread looks at the start time of the current
 * call a few times per limit, and only when a call runs past the limit does
 * it send a signal to the worker thread, whose handler installs a count hook
 * (lua_sethook is async-signal-safe: it is what lua.c does for Ctrl-C). The
 * hook then raises an error at the next instruction, and keeps raising it
 * until the call returns, so a script cannot pcall its way past it. The cost
 * on the fast path is two atomic stores per call; the price is the JIT.
 *
 * Memory. Every allocation of a state goes through limit_alloc, which
 * counts bytes and refuses growth past the limit while user code runs; Lua
 * turns that into a "not enough memory" error, the request gets 500 and a
 * full collection returns the garbage. */
#include <lauxlib.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"
#include "limit.h"

#define SIG_LUA_LIMIT (SIGRTMIN + 1)

static pthread_t worker_thread;
static _Atomic uint64_t call_started; /* ms, monotonic; 0 while no call runs */
static _Atomic uint64_t call_seq;     /* numbers the calls */
static _Atomic uint64_t abort_seq;    /* the call the watchdog wants stopped */
static volatile sig_atomic_t limit_hit;
static lua_State *volatile running_L;
static uint64_t time_limit_ms;
static uint64_t clock_deadline_ms;

/* The coarse clock (the kernel's tick, a few ms) is enough for limits of
 * tens of ms and more, and costs no TSC read on every call. */
static uint64_t mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void *limit_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    struct limit_mem *m = ud;
    if (nsize == 0) {
        free(ptr);
        m->used -= osize;
        return NULL;
    }
    if (m->enforce && m->limit && nsize > osize && m->used + (nsize - osize) > m->limit)
        return NULL;
    void *p = realloc(ptr, nsize);
    if (p) m->used = m->used - osize + nsize;
    return p;
}

static void limit_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    if (limit_hit) luaL_error(L, "lua time limit exceeded (%d ms)", (int)time_limit_ms);
}

static void clock_hook(lua_State *L, lua_Debug *ar)
{
    (void)ar;
    if (mono_ms() >= clock_deadline_ms) {
        limit_hit = 1;
        luaL_error(L, "lua time limit exceeded (%d ms)", (int)time_limit_ms);
    }
}

static void on_limit_signal(int sig)
{
    (void)sig;
    lua_State *L = running_L;
    if (!L || !atomic_load(&call_started) || atomic_load(&abort_seq) != atomic_load(&call_seq))
        return; /* that call finished meanwhile */
    limit_hit = 1;
    lua_sethook(L, limit_hook, LUA_MASKCALL | LUA_MASKRET | LUA_MASKCOUNT, 1);
}

static void *watchdog(void *arg)
{
    (void)arg;
    uint64_t tick = time_limit_ms / 4;
    if (tick < 5) tick = 5;
    if (tick > 250) tick = 250;
    struct timespec ts = {.tv_sec = (time_t)(tick / 1000), .tv_nsec = (long)(tick % 1000) * 1000000};
    for (;;) {
        nanosleep(&ts, NULL);
        uint64_t started = atomic_load(&call_started);
        if (started && mono_ms() - started >= time_limit_ms) {
            atomic_store(&abort_seq, atomic_load(&call_seq));
            pthread_kill(worker_thread, SIG_LUA_LIMIT);
        }
    }
    return NULL;
}

int limit_watchdog_start(lua_State *L, uint64_t limit_ms)
{
    (void)L;
    time_limit_ms = limit_ms;
    worker_thread = pthread_self();
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_limit_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    sigaction(SIG_LUA_LIMIT, &sa, NULL);

    /* The thread must never take the signal itself, nor the ones the worker
     * reads from its signalfd (they are blocked already and stay so). */
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, SIG_LUA_LIMIT);
    pthread_sigmask(SIG_BLOCK, &set, &old);
    pthread_t t;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 64 * 1024);
    int rc = pthread_create(&t, &attr, watchdog, NULL);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc) log_error("cannot start the lua time-limit watchdog: %s", strerror(rc));
    return -rc;
}

/* Only the worker thread writes call_seq and call_started: plain stores
 * ordered by release, no locked instructions on every call. */
void limit_enter(lua_State *L)
{
    limit_enter_spent(L, 0);
}

void limit_enter_spent(lua_State *L, uint64_t spent_ms)
{
    running_L = L;
    atomic_store_explicit(&call_seq, atomic_load_explicit(&call_seq, memory_order_relaxed) + 1,
                          memory_order_relaxed);
    /* The watchdog sees a call that began spent_ms earlier: the earlier
     * stretches of the same hook count (never 0: that means no call). */
    uint64_t now = mono_ms();
    atomic_store_explicit(&call_started, now > spent_ms ? now - spent_ms : 1, memory_order_release);
}

uint64_t limit_spent(void)
{
    uint64_t started = atomic_load_explicit(&call_started, memory_order_relaxed);
    uint64_t now = mono_ms();
    return started && now > started ? now - started : 0;
}

bool limit_leave(lua_State *L)
{
    atomic_store_explicit(&call_started, 0, memory_order_release);
    if (!limit_hit) return false;
    lua_sethook(L, NULL, 0, 0);
    limit_hit = 0;
    return true;
}

void limit_hook_clock(lua_State *L, uint64_t limit_ms)
{
    time_limit_ms = limit_ms;
    clock_deadline_ms = mono_ms() + limit_ms;
    limit_hit = 0;
    lua_sethook(L, clock_hook, LUA_MASKCOUNT, 10000);
}

void limit_unhook(lua_State *L)
{
    lua_sethook(L, NULL, 0, 0);
    limit_hit = 0;
}
