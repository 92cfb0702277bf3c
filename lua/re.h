/* re: proxy.re, regular expressions (PCRE2) with the semantics of
 * OpenResty's ngx.re: match, find, gmatch, sub and gsub. */
#pragma once
#include <lua.h>

/* Adds proxy.re to the proxy module (the global `proxy`, which must
 * exist), with its own cache of compiled patterns: it lives and dies with
 * this state. */
void re_open(lua_State *L);
