/* log: one write(2) per line, so lines from several workers sharing stderr
 * never interleave mid-line (writes under PIPE_BUF bytes are atomic). */
#include "log.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static enum log_level min_level = LOG_INFO;
static const char *access_path;
static int access_fd = -1;

const char *log_level_name(enum log_level level)
{
    static const char *names[] = {"debug", "info", "warn", "error"};
    return level <= LOG_ERROR ? names[level] : "?";
}

/* O_APPEND: lines from several workers sharing the file never overwrite
 * each other, and a file that logrotate truncated is written at its end. */
static int access_open(void)
{
    if (!access_path) return 0;
    if (!strcmp(access_path, "-")) {
        access_fd = STDOUT_FILENO;
        return 0;
    }
    int fd = open(access_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (fd == -1) return -errno;
    if (access_fd > STDERR_FILENO) close(access_fd);
    access_fd = fd;
    return 0;
}

int log_init(enum log_level level, const char *access_log_path)
{
    min_level = level;
    access_path = access_log_path;
    return access_open();
}

int log_reopen(void)
{
    int rc = access_open();
    if (rc) log_error("cannot reopen access log %s: %s", access_path, strerror(-rc));
    return rc;
}

bool log_enabled(enum log_level level)
{
    return level >= min_level;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level < min_level) return;
    char buf[4096];
    struct timeval tv;
    struct tm tm;
    gettimeofday(&tv, NULL);
    localtime_r(&tv.tv_sec, &tm);
    int n = (int)strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
    n += snprintf(buf + n, sizeof(buf) - (size_t)n, ".%03d [%s] %d: ", (int)(tv.tv_usec / 1000),
                  log_level_name(level), (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(buf + n, sizeof(buf) - (size_t)n, fmt, ap);
    va_end(ap);
    n = m < 0 ? n : (n + m >= (int)sizeof(buf) - 1 ? (int)sizeof(buf) - 2 : n + m);
    buf[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, buf, (size_t)n);
    (void)w; /* nothing sensible to do if stderr is gone */
}

bool log_access_enabled(void)
{
    return access_fd != -1;
}

void log_access(const char *line, size_t len)
{
    if (access_fd == -1) return;
    ssize_t w = write(access_fd, line, len);
    (void)w;
}

const char *log_addr(const struct sockaddr *sa, char *out, size_t len)
{
    char ip[INET6_ADDRSTRLEN] = "?";
    if (sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
        snprintf(out, len, "%s:%u", ip, ntohs(in->sin_port));
    } else if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
        snprintf(out, len, "[%s]:%u", ip, ntohs(in6->sin6_port));
    } else {
        snprintf(out, len, "unknown");
    }
    return out;
}

bool log_budget_take(struct log_budget *b, uint64_t now_ms, unsigned per_second, unsigned *suppressed)
{
    *suppressed = 0;
    if (now_ms - b->window_ms >= 1000 || now_ms < b->window_ms) {
        *suppressed = b->refused;
        b->window_ms = now_ms;
        b->used = b->refused = 0;
    }
    if (b->used < per_second) {
        b->used++;
        return true;
    }
    b->refused++;
    return false;
}
