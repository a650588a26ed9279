/* log.h - one line per event: time, level, role[pid], then key=value fields.
 *
 *     2026-11-23T10:02:11.481Z info learner[4121] event=checkpoint step=5000 policy_version=41
 *
 * log_init() is called once in main before any thread starts; the level check happens
 * before formatting, so a disabled log_debug costs one comparison. Lines go to stderr
 * (the launcher redirects each process's stderr to its log file), and to a second file if
 * one is added, with one write(2) each, so lines from several threads never interleave.
 */
#ifndef TWIG_LOG_H
#define TWIG_LOG_H

typedef enum log_level {
    LOG_LEVEL_DEBUG = 0,
    LOG_LEVEL_INFO = 1,
    LOG_LEVEL_WARN = 2,
    LOG_LEVEL_ERROR = 3,
    LOG_LEVEL_OFF = 4,     /* for log_init: no lines on stderr (the added file gets them) */
} log_level;

/* role: short process name ("modelserver"); copied. level: lowest level printed */
void log_init(const char *role, log_level level);
/* also write lines at level and above to fd (opened O_APPEND by the caller, kept open), e.g.
 * the launcher's RUN/twig.log beside its terse stderr. Before any thread starts */
void log_add_file(int fd, log_level level);

/* the level names by log_level, NULL-terminated: the choices of a CFG_ENUM log_level option */
extern const char *const log_level_names[];

/* parse "debug", "info", "warn", "error"; returns 0 or -EINVAL */
int log_level_parse(const char *s, log_level *out);

log_level log_get_level(void);

void log_write(log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define log_at(lvl, ...)                       \
    do {                                       \
        if ((lvl) >= log_get_level()) {        \
            log_write((lvl), __VA_ARGS__);     \
        }                                      \
    } while (0)

#define log_debug(...) log_at(LOG_LEVEL_DEBUG, __VA_ARGS__)
#define log_info(...) log_at(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_warn(...) log_at(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_error(...) log_at(LOG_LEVEL_ERROR, __VA_ARGS__)

#endif
