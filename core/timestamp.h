/* timestamp: the two clock texts luaproxy writes, built from one broken-down
 * time with fixed English day and month names (never the locale's), each
 * remade at most once a second:
 *
 *   TIMESTAMP_HTTP  "Sun, 06 Nov 1994 08:49:37 GMT": the Date header
 *                   (IMF-fixdate, RFC 9110 5.6.7), in UTC;
 *   TIMESTAMP_CLF   "[06/Nov/1994:08:49:37 +0000]": the access log, in
 *                   local time with its offset, as nginx writes it. */
#pragma once
#include <stdbool.h>
#include <time.h>

enum timestamp_style { TIMESTAMP_HTTP, TIMESTAMP_CLF };

/* One cached text: a caller keeps one per style, e.g.
 * static struct timestamp t = {.style = TIMESTAMP_CLF}. */
struct timestamp {
    enum timestamp_style style;
    bool filled; /* text holds the second `sec` */
    time_t sec;
    char text[40];
};

/* The text for the Unix time `wall` (its second), NUL-terminated; valid
 * until the next call with the same struct. */
const char *timestamp_text(struct timestamp *t, double wall);
