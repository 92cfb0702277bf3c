/* Unit tests for lua/fields.c: the header list handed to the core, the
 * checks of a header a script sets, and the headers table of req and res
 * kept in step with set_header (run on a real Lua state). */
#include "fields.h"

#include <check.h>
#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <string.h>

START_TEST(list_grows_and_keeps_every_entry)
{
    struct field_list l = {0};
    char names[100][8];
    for (int i = 0; i < 100; i++) { /* past the first capacity, and twice more */
        snprintf(names[i], sizeof(names[i]), "h%d", i);
        ck_assert_int_eq(field_list_add(&l, names[i], strlen(names[i]), "v", 1), 0);
    }
    ck_assert_uint_eq(l.n, 100);
    ck_assert_uint_ge(l.cap, 100);
    for (int i = 0; i < 100; i++) {
        ck_assert_ptr_eq(l.v[i].name, names[i]);
        ck_assert_uint_eq(l.v[i].nlen, strlen(names[i]));
        ck_assert_uint_eq(l.v[i].vlen, 1);
    }
    /* Reused from one request to the next: n back to 0, the array kept. */
    struct script_header *kept = l.v;
    l.n = 0;
    ck_assert_int_eq(field_list_add(&l, "x", 1, NULL, 0), 0);
    ck_assert_ptr_eq(l.v, kept);
    ck_assert_uint_eq(l.n, 1);
    ck_assert_ptr_null(l.v[0].value); /* an edit that removes the header */
    field_list_free(&l);
    ck_assert_ptr_null(l.v);
    ck_assert_uint_eq(l.n + l.cap, 0);
}
END_TEST

START_TEST(names_the_proxy_manages_are_refused)
{
    ck_assert_ptr_null(field_check_name("X-Trace", 7));
    ck_assert_ptr_nonnull(field_check_name("Content-Length", 14));
    ck_assert_ptr_nonnull(field_check_name("TRANSFER-ENCODING", 17));
    ck_assert_ptr_nonnull(field_check_name("Upgrade", 7));
    ck_assert_ptr_nonnull(field_check_name("bad name", 8)); /* not a token */
    ck_assert_ptr_nonnull(field_check_name("", 0));
}
END_TEST

START_TEST(values_with_line_breaks_are_refused)
{
    ck_assert_ptr_null(field_check_string("X-A", 3, "a b\tc", 5));
    ck_assert_ptr_nonnull(field_check_string("X-A", 3, "a\r\nX-B: 1", 10));
    ck_assert_ptr_nonnull(field_check_string("X-A", 3, "a\nb", 3));
    ck_assert_ptr_null(field_check_string("Host", 4, "example.com:8080", 16));
    ck_assert_ptr_nonnull(field_check_string("Host", 4, "a b", 3));
}
END_TEST

/* obj:set_header for a test object whose env is the upvalue table. */
static int set_header(lua_State *L)
{
    lua_settop(L, 3);
    lua_pushvalue(L, lua_upvalueindex(1));
    field_edit_header(L);
    return 0;
}

/* Two headers as a parser leaves them: X-One twice, and Accept. */
static const char head[] = "X-One: a\r\nX-One: b\r\nAccept: */*\r\n";
static const struct http_header parsed[] = {
    {.name = {0, 5}, .value = {7, 1}},
    {.name = {10, 5}, .value = {17, 1}},
    {.name = {20, 6}, .value = {28, 3}},
};

/* env.headers[name] after field_push_headers, or NULL when it is nil. */
static const char *header_of(lua_State *L, const char *name)
{
    lua_pushvalue(L, 1); /* the env */
    field_push_headers(L, parsed, 3, head);
    lua_getfield(L, -1, name);
    const char *v = lua_tostring(L, -1); /* anchored by the headers table */
    lua_pop(L, 3);
    return v;
}

START_TEST(headers_table_follows_set_header)
{
    lua_State *L = luaL_newstate();
    ck_assert_ptr_nonnull(L);
    luaL_openlibs(L);
    lua_newtable(L); /* 1: the env */
    lua_pushvalue(L, 1);
    lua_pushcclosure(L, set_header, 1);
    lua_setglobal(L, "set_header");
    /* An edit made before the first read is applied when the table is built. */
    ck_assert_int_eq(luaL_dostring(L, "set_header(nil, 'Accept', 'text/plain')"), 0);
    ck_assert_str_eq(header_of(L, "x-one"), "a, b");
    ck_assert_str_eq(header_of(L, "accept"), "text/plain");
    /* Once built, the table is kept in step: removal, and a list of values. */
    ck_assert_int_eq(luaL_dostring(L, "set_header(nil, 'X-ONE', nil)"), 0);
    ck_assert_ptr_null(header_of(L, "x-one"));
    ck_assert_int_eq(luaL_dostring(L, "set_header(nil, 'X-Two', {'1', '2'})"), 0);
    ck_assert_str_eq(header_of(L, "x-two"), "1, 2");
    /* What it records for the forwarded head: lower-case name -> value, or
     * false (removed), and the name as the script wrote it. */
    lua_getfield(L, 1, "set_headers");
    lua_getfield(L, -1, "x-one");
    ck_assert(lua_isboolean(L, -1) && !lua_toboolean(L, -1));
    lua_getfield(L, 1, "set_names");
    lua_getfield(L, -1, "x-one");
    ck_assert_str_eq(lua_tostring(L, -1), "X-ONE");
    /* A managed header is refused with the reason. */
    ck_assert_int_ne(luaL_dostring(L, "set_header(nil, 'Connection', 'close')"), 0);
    ck_assert_ptr_nonnull(strstr(lua_tostring(L, -1), "managed by the proxy"));
    lua_close(L);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("fields");
    TCase *tc = tcase_create("fields");
    tcase_add_test(tc, list_grows_and_keeps_every_entry);
    tcase_add_test(tc, names_the_proxy_manages_are_refused);
    tcase_add_test(tc, values_with_line_breaks_are_refused);
    tcase_add_test(tc, headers_table_follows_set_header);
    suite_add_tcase(s, tc);
    SRunner *sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? 1 : 0;
}
