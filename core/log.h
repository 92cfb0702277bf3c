/* log: the error log on stderr ("time level pid: message") and the access log. */
#pragma once
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

#define log_debug(...) (log_enabled(LOG_DEBUG) ? log_msg(LOG_DEBUG, __VA_ARGS__) : (void)0)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
