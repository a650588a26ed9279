/* err.c - error names, messages and the thread-local detail */
#include "common/base/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define ERR_DETAIL_MAX 512

static _Thread_local char err_detail[ERR_DETAIL_MAX];
static _Thread_local int err_last;

const char *err_name(int code)
{
    switch (code) {
    case 0:
        return "OK";
#define TWIG_ERR_NAME(name, value, msg) \
    case name:                          \
        return #name;
        TWIG_ERR_MAP(TWIG_ERR_NAME)
#undef TWIG_ERR_NAME
    default:
        break;
    }
    if (code < 0 && code > -4096) {
        const char *n = strerrorname_np(-code);
        return n ? n : "ERRNO";
    }
    return "UNKNOWN";
}

const char *err_str(int code)
{
    switch (code) {
    case 0:
        return "success";
#define TWIG_ERR_STR(name, value, msg) \
    case name:                         \
        return msg;
        TWIG_ERR_MAP(TWIG_ERR_STR)
#undef TWIG_ERR_STR
    default:
        break;
    }
    if (code < 0 && code > -4096) {
        return strerrordesc_np(-code);
    }
    return "unknown error";
}

int err_set(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err_detail, sizeof err_detail, fmt, ap);
    va_end(ap);
    err_last = code;
    return code;
}

const char *err_msg(void)
{
    return err_detail;
}

int err_code(void)
{
    return err_last;
}

void err_clear(void)
{
    err_detail[0] = '\0';
    err_last = 0;
}
