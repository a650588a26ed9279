/* err.h - twig's error codes and the thread-local error detail.
 *
 * Expected failures return a negative int: -errno where one fits (-EINVAL, -ENOENT, ...),
 * else one of the TWIG_E* codes below, which live above the errno range. The function that
 * fails writes the detail with err_set(); the caller that decides what to do logs it once.
 *
 *     int rc = reallog_open(&log, dir);
 *     if (rc < 0) {
 *         log_error("event=open_failed dir=%s err=%s detail=\"%s\"", dir, err_name(rc), err_msg());
 *     }
 */
#ifndef TWIG_ERR_H
#define TWIG_ERR_H

#include <errno.h>

/* X(name, value, message): twig's own codes, negative, below every errno */
#define TWIG_ERR_MAP(X)                                                           \
    X(TWIG_EINVAL_ARG, -10001, "invalid argument")                                \
    X(TWIG_ECORRUPT, -10002, "data is corrupt (checksum or framing)")             \
    X(TWIG_EVERSION, -10003, "incompatible version")                              \
    X(TWIG_EUNAVAIL, -10004, "peer unavailable")                                  \
    X(TWIG_EDEADLINE, -10005, "deadline exceeded")                                \
    X(TWIG_ECANCELLED, -10006, "cancelled")                                       \
    X(TWIG_ETOOBIG, -10007, "message too large")                                  \
    X(TWIG_EFULL, -10008, "resource exhausted")                                   \
    X(TWIG_ENOTFOUND, -10009, "not found")                                        \
    X(TWIG_EUNIMPL, -10010, "not implemented by the peer")                        \
    X(TWIG_EINTERNAL, -10011, "internal error")                                   \
    X(TWIG_EMISMATCH, -10012, "does not match the run (env id or dimensions)")    \
    X(TWIG_EDIVERGED, -10013, "numerical divergence")                             \
    X(TWIG_ESHUTDOWN, -10014, "shutting down")                                    \
    X(TWIG_EPROTO, -10015, "protocol error")                                      \
    X(TWIG_EFENCED, -10016, "source identity fenced: start a new one")            \
    X(TWIG_ECONFIG, -10017, "the config does not fit the run's data on disk")            \
    X(TWIG_ELEASE, -10018, "membership lease expired or unknown: join again")

enum twig_err {
#define TWIG_ERR_ENUM(name, value, msg) name = (value),
    TWIG_ERR_MAP(TWIG_ERR_ENUM)
#undef TWIG_ERR_ENUM
};

/* name of a code: "TWIG_ECORRUPT", "EINVAL", ... ("OK" for 0) */
const char *err_name(int code);

/* fixed message of a code (strerror for errno values) */
const char *err_str(int code);

/* set the calling thread's error detail (printf format); returns code, so
 * `return err_set(-EINVAL, "obs_dim is %u, expected %u", a, b);` reads naturally */
int err_set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* the calling thread's last detail ("" if none); valid until the next err_set */
const char *err_msg(void);

/* the code passed to the last err_set on this thread */
int err_code(void);

/* forget the detail */
void err_clear(void);

#endif
