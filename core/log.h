/* log: the error log on stderr ("time level pid: message") and the access log. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "config.h"

/* Opens the access log (NULL: none, "-": stdout). 0, or -errno when it
 * cannot be opened (nothing logged: the caller says it). */
int log_init(enum log_level level, const char *access_log_path);
/* Reopens the access log (SIGUSR1); a failure is logged and the old file
 * kept. Returns 0 or -errno. */
int log_reopen(void);
bool log_enabled(enum log_level level);
void log_msg(enum log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One finished line (with '\n') to the access log, if there is one. */
void log_access(const char *line, size_t len);
bool log_access_enabled(void);
const char *log_level_name(enum log_level level);

/* "addr:port" ("[v6]:port") of a socket address, for log lines. */
const char *log_addr(const struct sockaddr *sa, char *out, size_t len);

/* A budget of lines per second, for messages a client can cause at will (a
 * flood of bad requests must not fill the disk). log_budget_take() says
 * whether one more line may be written now; when a new second begins it
 * sets *suppressed to the lines refused in the previous window, so the
 * caller can say how many it dropped. Pure: the caller passes the time. */
struct log_budget {
    uint64_t window_ms; /* start of the current one-second window */
    unsigned used;      /* lines taken in it */
    unsigned refused;   /* lines refused in it */
};
bool log_budget_take(struct log_budget *b, uint64_t now_ms, unsigned per_second, unsigned *suppressed);

#define log_debug(...) (log_enabled(LOG_DEBUG) ? log_msg(LOG_DEBUG, __VA_ARGS__) : (void)0)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
