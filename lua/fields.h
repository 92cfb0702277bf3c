/* fields: header fields as a script sees and sets them: the checks of
 * every call that sets one, the encoding of set_path/set_query, the
 * headers tables of req and res, and the header lists handed to the core. */
#pragma once
#include <lua.h>
#include <stdbool.h>
#include <stddef.h>

#include "http.h"
#include "script_types.h"

/* NULL when a script may set a header of this name, else why not. */
const char *field_check_name(const char *name, size_t nlen);
/* The same check for one string value. */
const char *field_check_string(const char *name, size_t nlen, const char *v, size_t vlen);
/* Checks the value at idx for header name (a string, a number, or an
 * array of them: one line each) and pushes what to keep: a string, or a
 * fresh array of strings the script cannot change after the check. Else
 * returns why not, pushing nothing. */
const char *field_push_value(lua_State *L, const char *name, size_t nlen, int idx);
/* Pushes the value at idx (a string, or an array of them) as it reads in
 * req.headers: an array joined with ", ", nil when empty. */
void field_push_joined(lua_State *L, int idx);
/* Pushes s with what cannot go into a request line's path (query: its
 * query) percent-encoded. */
void field_push_encoded(lua_State *L, const char *s, size_t n, bool query);

/* A req's or res's env table (on top of the stack) keeps what the script
 * did to the object: set_headers (lower-case name -> value, or false:
 * removed), set_names (lower-case name -> the name as written) and the
 * headers table, built on first read. */

/* With the env table on top: pushes env.headers, a lower-case name ->
 * value table (repeated headers joined with ", ") built on first use from
 * the parsed head with the set_header edits made so far applied. */
void field_push_headers(lua_State *L, const struct http_header *hs, uint16_t n, const char *base);
/* obj:set_header(name, value) for req and res, with the object's env table
 * at stack index 4: validates, records the edit in the env's set_headers
 * table and keeps env.headers in step. */
void field_edit_header(lua_State *L);

/* Headers handed to the core (a reply's, or edits): the strings belong to
 * the Lua state; the array is kept and reused from one request to the next. */
struct field_list {
    struct script_header *v;
    size_t n, cap;
};
/* Appends one header: 0, or -1 when out of memory. */
int field_list_add(struct field_list *l, const char *name, size_t nlen, const char *value,
                   size_t vlen);
void field_list_free(struct field_list *l);
