/* The end of a unit suite's main: every test in its own process (Check's
 * fork mode, whatever CK_FORK says), and an exit status that says whether
 * any failed. check_run_tests builds the common suite of one test case
 * first. */
#pragma once
#include <check.h>
#include <stddef.h>
#include <stdlib.h>

static inline int check_run(Suite *s)
{
    SRunner *sr = srunner_create(s);
    srunner_set_fork_status(sr, CK_FORK);
    srunner_run_all(sr, CK_NORMAL);
    int failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}

/* One case named like the suite; setup and teardown (may be NULL) run
 * around each test, in its process; timeout in seconds, 0 for Check's. */
static inline int check_run_tests(const char *name, SFun setup, SFun teardown, int timeout,
                                  const TTest *const tests[], size_t n)
{
    Suite *s = suite_create(name);
    TCase *tc = tcase_create(name);
    if (setup || teardown) tcase_add_checked_fixture(tc, setup, teardown);
    if (timeout) tcase_set_timeout(tc, timeout);
    for (size_t i = 0; i < n; i++)
        tcase_add_test(tc, tests[i]);
    suite_add_tcase(s, tc);
    return check_run(s);
}
#define CHECK_COUNT(a) (sizeof(a) / sizeof((a)[0]))
