/* log.c - formatting and writing of log lines */
#include "common/base/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define LOG_LINE_MAX 2048
#define LOG_ROLE_MAX 32

/* set once by log_init (and log_add_file) before threads start, read-only afterwards */
static struct {
    char role[LOG_ROLE_MAX];
    log_level level;        /* stderr's */
    int file_fd;            /* a second sink, or -1 */
    log_level file_level;
    log_level lowest;       /* what the macros let through */
} log_cfg = {"twig", LOG_LEVEL_INFO, -1, LOG_LEVEL_INFO, LOG_LEVEL_INFO};

const char *const log_level_names[] = {"debug", "info", "warn", "error", NULL};

void log_init(const char *role, log_level level)
{
    snprintf(log_cfg.role, sizeof log_cfg.role, "%s", role);
    log_cfg.level = level;
    log_cfg.lowest = level;
}

void log_add_file(int fd, log_level level)
{
    log_cfg.file_fd = fd;
    log_cfg.file_level = level;
    log_cfg.lowest = level < log_cfg.level ? level : log_cfg.level;
}

int log_level_parse(const char *s, log_level *out)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(s, log_level_names[i]) == 0) {
            *out = (log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

log_level log_get_level(void)
{
    return log_cfg.lowest;
}

void log_write(log_level level, const char *fmt, ...)
{
    char line[LOG_LINE_MAX];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s[%d] ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, ts.tv_nsec / 1000000, log_level_names[level], log_cfg.role,
                     (int)getpid());
    va_list ap;
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof line - (size_t)n - 1, fmt, ap);
    va_end(ap);
    size_t len = (size_t)n + (m < 0 ? 0 : (size_t)m);
    if (len > sizeof line - 2) {
        len = sizeof line - 2;   /* truncated: keep the newline */
    }
    line[len++] = '\n';
    if (level >= log_cfg.level) {
        ssize_t w = write(STDERR_FILENO, line, len);
        (void)w;
    }
    if (log_cfg.file_fd >= 0 && level >= log_cfg.file_level) {
        ssize_t w = write(log_cfg.file_fd, line, len);
        (void)w;
    }
}
