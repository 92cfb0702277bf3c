/* Unit tests for core/tls.c's pure parts: which certificate name covers
 * which host (SNI), and the checks --tls-cert and --tls-ciphers fail
 * before any certificate is read. */
#include "tls.h"
#include "check_run.h"

#include <check.h>
#include <string.h>

START_TEST(exact_names_ignore_case)
{
    ck_assert(tls_name_matches("a.example.test", "a.example.test"));
    ck_assert(tls_name_matches("A.Example.TEST", "a.example.test"));
    ck_assert(!tls_name_matches("a.example.test", "b.example.test"));
    ck_assert(!tls_name_matches("a.example.test", "a.example.test.evil"));
    ck_assert(!tls_name_matches("example.test", "a.example.test"));
}
END_TEST

START_TEST(a_wildcard_stands_for_one_label)
{
    ck_assert(tls_name_matches("*.example.test", "a.example.test"));
    ck_assert(tls_name_matches("*.example.test", "WWW.EXAMPLE.test"));
    ck_assert(!tls_name_matches("*.example.test", "example.test"));      /* no label */
    ck_assert(!tls_name_matches("*.example.test", "a.b.example.test"));  /* two labels */
    ck_assert(!tls_name_matches("*.example.test", ".example.test"));     /* an empty one */
    ck_assert(!tls_name_matches("*.example.test", "a.example.testx"));
    ck_assert(!tls_name_matches("a*.example.test", "ab.example.test"));  /* only a whole first label */
}
END_TEST

START_TEST(an_unreadable_certificate_is_named)
{
    struct config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.tls_min_version = 12;
    cfg.tls_certs[cfg.ntls_certs++] = "/nonexistent/luaproxy-test.pem";
    char err[512];
    ck_assert_int_eq(tls_server_load(&cfg, false, err, sizeof(err)), -1);
    ck_assert_msg(strstr(err, "--tls-cert /nonexistent/luaproxy-test.pem: cannot read it"), "%s", err);
}
END_TEST

START_TEST(no_certificates_is_nothing_to_do)
{
    struct config cfg;
    memset(&cfg, 0, sizeof(cfg));
    char err[512];
    ck_assert_int_eq(tls_server_load(&cfg, true, err, sizeof(err)), 0);
    tls_server_free();
}
END_TEST

int main(void)
{
    const TTest *const tests[] = {
        exact_names_ignore_case,
        a_wildcard_stands_for_one_label,
        an_unreadable_certificate_is_named,
        no_certificates_is_nothing_to_do,
    };
    return check_run_tests("tls", NULL, NULL, 30, tests, CHECK_COUNT(tests));
}
