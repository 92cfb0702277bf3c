/* ldns: (ldns.h). */
#include "ldns.h"

#include <lauxlib.h>

int ldns_wait(lua_State *L, const char *name, uint64_t timeout_ms)
{
    (void)timeout_ms;
    lua_pushnil(L);
    lua_pushfstring(L, "%s could not be resolved (no resolver)", name);
    return 2;
}

void ldns_free(void)
{
}
