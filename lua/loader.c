/* loader: where `require` looks, and what it says when it finds nothing.
 *
 * A script's own modules sit beside it, but Lua's default search starts at
 * "./", the working directory, which is "/" under systemd and anything at
 * all from a shell. So the script's absolute directory goes first, then the
 * system paths; the "./" entries are dropped unless LUA_PATH/LUA_CPATH set
 * them on purpose. And a missing module makes Lua list every file it tried,
 * a dozen lines: that becomes one line naming the module and the places. */
#include <lauxlib.h>
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "loader.h"

bool loader_script_dir(const char *path, char *dir, size_t len)
{
    char real[PATH_MAX];
    if (!realpath(path, real)) return false;
    char *slash = strrchr(real, '/');
    if (!slash) return false;
    if (slash == real) slash++; /* a script in "/" */
    *slash = '\0';
    if (strlen(real) >= len) return false;
    strcpy(dir, real);
    return true;
}

/* package[field] = the script's directory with each of patterns, then the
 * current value without its "./" entries (unless env set it). */
static void set_search_path(lua_State *L, const char *field, const char *env, const char *dir,
                            const char *const *patterns)
{
    lua_getfield(L, LUA_REGISTRYINDEX, "_LOADED"); /* where require keeps the package table */
    lua_getfield(L, -1, "package");
    lua_remove(L, -2);
    int pkg = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (int i = 0; patterns[i]; i++) {
        luaL_addstring(&b, dir);
        if (strcmp(dir, "/")) luaL_addchar(&b, '/');
        luaL_addstring(&b, patterns[i]);
        luaL_addchar(&b, ';');
    }
    lua_getfield(L, pkg, field);
    const char *old = lua_tostring(L, -1);
    lua_pop(L, 1); /* package keeps the string alive */
    bool keep_all = getenv(env) != NULL;
    while (old && *old) {
        const char *end = strchr(old, ';');
        size_t n = end ? (size_t)(end - old) : strlen(old);
        if (n && (keep_all || strncmp(old, "./", 2))) {
            luaL_addlstring(&b, old, n);
            luaL_addchar(&b, ';');
        }
        old += n + (end != NULL);
    }
    luaL_pushresult(&b);
    size_t len;
    lua_tolstring(L, -1, &len);
    lua_pushlstring(L, lua_tostring(L, -1), len ? len - 1 : 0); /* without the last ';' */
    lua_setfield(L, pkg, field);
    lua_settop(L, pkg - 1);
}

/* require(name) through the original require, upvalue 1; when the module
 * is nowhere, the error names it and where it was looked for, in one line
 * (upvalue 2: the script's directory). */
static int short_require(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1);
    lua_settop(L, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, 1);
    if (lua_pcall(L, 1, 1, 0) == 0) return 1;
    const char *msg = lua_tostring(L, -1);
    const char *nf = msg ? strstr(msg, "' not found:") : NULL;
    if (!nf) return lua_error(L); /* the module itself failed: its own error */
    const char *dir = lua_tostring(L, lua_upvalueindex(2));
    luaL_where(L, 1);
    lua_pushfstring(L, "module '%s' not found (looked in %s%sthe system Lua paths: package.path, "
                       "package.cpath)",
                    name, dir, *dir ? " and " : "");
    lua_concat(L, 2);
    return lua_error(L);
}

void loader_open(lua_State *L, const char *script_path)
{
    char dir[PATH_MAX];
    if (!loader_script_dir(script_path, dir, sizeof(dir))) {
        log_warn("%s: cannot resolve the script's directory (%s): require looks in the system "
                 "paths only", script_path, strerror(errno));
        dir[0] = '\0';
    } else if (strpbrk(dir, ";?")) {
        /* Both are special in a search path: the entry would be wrong. */
        log_warn("%s: the script's directory has a ';' or '?' in its name: require looks in the "
                 "system paths only", script_path);
        dir[0] = '\0';
    } else {
        static const char *const lua_patterns[] = {"?.lua", "?/init.lua", NULL};
        static const char *const c_patterns[] = {"?.so", NULL};
        set_search_path(L, "path", "LUA_PATH", dir, lua_patterns);
        set_search_path(L, "cpath", "LUA_CPATH", dir, c_patterns);
    }
    lua_getglobal(L, "require");
    lua_pushstring(L, dir);
    lua_pushcclosure(L, short_require, 2);
    lua_setglobal(L, "require");
}
