#include "timestamp.h"

#include <stdio.h>
#include <stdlib.h>

static const char day_names[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char month_names[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                        "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

const char *timestamp_text(struct timestamp *t, double wall)
{
    time_t sec = (time_t)wall;
    if (t->filled && sec == t->sec) return t->text;
    struct tm tm = {0};
    if (t->style == TIMESTAMP_HTTP)
        gmtime_r(&sec, &tm);
    else
        localtime_r(&sec, &tm);
    /* Names by index, checked: a time gmtime_r cannot convert leaves tm
     * zeroed rather than an index out of range. */
    const char *day = day_names[(unsigned)tm.tm_wday % 7];
    const char *month = month_names[(unsigned)tm.tm_mon % 12];
    int year = tm.tm_year + 1900;
    if (t->style == TIMESTAMP_HTTP) {
        snprintf(t->text, sizeof(t->text), "%s, %02d %s %d %02d:%02d:%02d GMT", day, tm.tm_mday,
                 month, year, tm.tm_hour, tm.tm_min, tm.tm_sec);
    } else {
        /* strftime's %z: the offset east of UTC as +hhmm or -hhmm. Real
         * offsets are under a day; the modulo tells the compiler that the
         * text fits. */
        int off = (int)(tm.tm_gmtoff / 60 % (100 * 60));
        char sign = off < 0 ? '-' : '+';
        off = abs(off);
        snprintf(t->text, sizeof(t->text), "[%02d/%s/%d:%02d:%02d:%02d %c%02d%02d]", tm.tm_mday,
                 month, year, tm.tm_hour, tm.tm_min, tm.tm_sec, sign, off / 60, off % 60);
    }
    t->sec = sec;
    t->filled = true;
    return t->text;
}
