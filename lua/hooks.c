/* hooks: which global functions are hooks, and a word about those that
 * look like one but are not.
 *
 * The hooks are route, on_response and on_<method> for a method of the IANA
 * HTTP method registry (lower case, '-' written '_'). A misspelt hook is
 * otherwise a silent no-op that a newcomer can look for all afternoon, so
 * loading names each such function and the hook it probably meant: the
 * closest one by edit distance. */
#include <lauxlib.h>
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "hooks.h"

/* The IANA "Hypertext Transfer Protocol (HTTP) Method Registry", in
 * alphabetical order ("*" is reserved, not a method). */
static const char *const iana_methods[] = {
    "ACL",        "BASELINE-CONTROL", "BIND",      "CHECKIN",   "CHECKOUT",      "CONNECT",
    "COPY",       "DELETE",           "GET",       "HEAD",      "LABEL",         "LINK",
    "LOCK",       "MERGE",            "MKACTIVITY", "MKCALENDAR", "MKCOL",       "MKREDIRECTREF",
    "MKWORKSPACE", "MOVE",            "OPTIONS",   "ORDERPATCH", "PATCH",        "POST",
    "PRI",        "PROPFIND",         "PROPPATCH", "PUT",       "QUERY",         "REBIND",
    "REPORT",     "SEARCH",           "TRACE",     "UNBIND",    "UNCHECKOUT",    "UNLINK",
    "UNLOCK",     "UPDATE",           "UPDATEREDIRECTREF", "VERSION-CONTROL",
};
#define N_IANA (sizeof(iana_methods) / sizeof(iana_methods[0]))
#define HOOK_NAME_MAX 32
#define GLOBAL_NAME_MAX 256 /* longer global names are not looked at */

/* "on_version_control" for "VERSION-CONTROL". */
static void handler_of(const char *method, char out[HOOK_NAME_MAX])
{
    size_t n = 0;
    memcpy(out, "on_", 3);
    n = 3;
    for (const char *p = method; *p && n < HOOK_NAME_MAX - 1; p++)
        out[n++] = *p == '-' ? '_' : (char)tolower((unsigned char)*p);
    out[n] = '\0';
}

const char *hooks_handler(const char *method)
{
    static char names[N_IANA][HOOK_NAME_MAX];
    for (size_t i = 0; i < N_IANA; i++) {
        if (strcmp(iana_methods[i], method)) continue;
        if (!names[i][0]) handler_of(iana_methods[i], names[i]);
        return names[i];
    }
    return NULL;
}

static bool is_function(lua_State *L, const char *name)
{
    lua_getfield(L, LUA_GLOBALSINDEX, name);
    bool yes = lua_isfunction(L, -1);
    lua_pop(L, 1);
    return yes;
}

void hooks_push_allow(lua_State *L)
{
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    bool get = is_function(L, "on_get"), any = false;
    for (size_t i = 0; i < N_IANA; i++) {
        const char *m = iana_methods[i];
        if (!is_function(L, hooks_handler(m)) && !(get && !strcmp(m, "HEAD"))) continue;
        if (any) luaL_addstring(&b, ", ");
        luaL_addstring(&b, m);
        any = true;
    }
    luaL_pushresult(&b);
}

/* Edit distance with transpositions (optimal string alignment), for names
 * under HOOK_NAME_MAX bytes. */
static size_t distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    size_t d[HOOK_NAME_MAX + 1][HOOK_NAME_MAX + 1];
    if (la > HOOK_NAME_MAX || lb > HOOK_NAME_MAX) return (size_t)-1;
    for (size_t i = 0; i <= la; i++) d[i][0] = i;
    for (size_t j = 0; j <= lb; j++) d[0][j] = j;
    for (size_t i = 1; i <= la; i++) {
        for (size_t j = 1; j <= lb; j++) {
            size_t cost = a[i - 1] != b[j - 1];
            size_t v = d[i - 1][j] + 1;
            if (d[i][j - 1] + 1 < v) v = d[i][j - 1] + 1;
            if (d[i - 1][j - 1] + cost < v) v = d[i - 1][j - 1] + cost;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && d[i - 2][j - 2] + 1 < v)
                v = d[i - 2][j - 2] + 1;
            d[i][j] = v;
        }
    }
    return d[la][lb];
}

static bool is_hook(const char *name)
{
    if (!strcmp(name, "route") || !strcmp(name, "on_response")) return true;
    for (size_t i = 0; i < N_IANA; i++)
        if (!strcmp(name, hooks_handler(iana_methods[i]))) return true;
    return false;
}

/* The real hook closest to low (a lower-cased name), and its distance. */
static const char *closest(const char *low, size_t *best)
{
    const char *hook = "route";
    *best = distance(low, "route");
    size_t d = distance(low, "on_response");
    if (d < *best) {
        *best = d;
        hook = "on_response";
    }
    for (size_t i = 0; i < N_IANA; i++) {
        const char *h = hooks_handler(iana_methods[i]);
        if ((d = distance(low, h)) < *best) {
            *best = d;
            hook = h;
        }
    }
    return hook;
}

/* Whether a global function of this name was probably meant as a hook:
 * on_anything (SPEC), onGet-style names, and near misses of route and
 * on_response that are not longer words containing them (router). */
static bool looks_like_hook(const char *name, const char *low)
{
    if (!strncmp(low, "on_", 3)) return true;
    if (!strncmp(name, "on", 2) && isupper((unsigned char)name[2])) return true;
    if (!strncmp(low, "on", 2)) {
        char with[GLOBAL_NAME_MAX + 1];
        snprintf(with, sizeof(with), "on_%s", low + 2);
        if (is_hook(with)) return true; /* onget, onresponse */
    }
    if (!strcmp(low, "route")) return true; /* Route */
    if (!strstr(low, "route") && distance(low, "route") <= 1) return true;
    if (!strstr(low, "on_response") && distance(low, "on_response") <= 2) return true;
    return false;
}

void hooks_check(lua_State *L, const char *path)
{
    lua_pushnil(L);
    while (lua_next(L, LUA_GLOBALSINDEX)) {
        size_t len;
        const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tolstring(L, -2, &len) : NULL;
        bool fn = lua_isfunction(L, -1);
        lua_pop(L, 1);
        if (!fn || !name || len >= GLOBAL_NAME_MAX || is_hook(name)) continue;
        char low[GLOBAL_NAME_MAX];
        for (size_t i = 0; i <= len; i++) low[i] = (char)tolower((unsigned char)name[i]);
        if (!looks_like_hook(name, low)) continue;
        size_t d;
        const char *hook = closest(low, &d);
        /* Two edits away is a typo in a long name (on_respone), but in a short
         * one it is another word: on_purge is no misspelt on_merge. */
        if (d <= 1 || (d == 2 && strlen(hook) >= 10)) {
            log_warn("%s: function %s is not a hook and is never called: did you mean %s?", path, name, hook);
            continue;
        }
        static const char hooks[] = "the hooks are route, on_response and on_<method> for a method of the "
                                    "IANA registry (on_get, on_post, ...)";
        static const char methods[] = "the hooks are route, on_response and on_<method> (on_get, on_post, "
                                      "...), and route(req) sees every method";
        if (strncmp(low, "on_", 3)) {
            log_warn("%s: function %s is not a hook and is never called (%s)", path, name, hooks);
            continue;
        }
        char method[GLOBAL_NAME_MAX];
        size_t n = 0;
        for (const char *p = name + 3; *p; p++) method[n++] = *p == '_' ? '-' : (char)toupper((unsigned char)*p);
        method[n] = '\0';
        log_warn("%s: function %s is not a hook and is never called: %s is not a method of the IANA "
                 "registry; %s",
                 path, name, method, methods);
    }
}
