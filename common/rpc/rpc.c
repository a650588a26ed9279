/* rpc.c - gRPC library lifetime and the translation between twig codes and gRPC status.
 *
 * The server lives in rpc_server.c, the client in rpc_client.c; what both use is below.
 */
#include "common/rpc/rpc.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/status.h>
#include <grpc/support/log.h>

#include "common/base/clock.h"
#include "common/base/err.h"
#include "common/base/log.h"
#include "common/base/mem.h"
#include "common/rpc/rpc_priv.h"

/* ---- library ---- */

/* gRPC core's own log lines, in twig's log format: its errors as warnings (a caller reports
 * what failed, with context), the rest only at debug level */
static void rpc_on_grpc_log(gpr_log_func_args *a)
{
    if (a->severity == GPR_LOG_SEVERITY_ERROR) {
        log_warn("event=grpc_log file=%s:%d msg=\"%.300s\"", a->file, a->line, a->message);
    } else {
        log_debug("event=grpc_log file=%s:%d msg=\"%.300s\"", a->file, a->line, a->message);
    }
}

static pthread_once_t rpc_log_once = PTHREAD_ONCE_INIT;

static void rpc_log_install(void)
{
    gpr_set_log_function(rpc_on_grpc_log);
}

void rpc_grpc_init(void)
{
    pthread_once(&rpc_log_once, rpc_log_install);
    grpc_init();
}

void rpc_lib_init(void)
{
    rpc_grpc_init();
}

/* grpc_shutdown on its own thread, so the caller can stop waiting for it */
typedef struct lib_unload {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool done;
    int refs;  /* caller + thread; the last one frees */
} lib_unload;

static void lib_unload_unref(lib_unload *u)
{
    pthread_mutex_lock(&u->lock);
    int left = --u->refs;
    pthread_mutex_unlock(&u->lock);
    if (left == 0) {
        pthread_cond_destroy(&u->cond);
        pthread_mutex_destroy(&u->lock);
        free(u);
    }
}

static void *lib_unload_main(void *arg)
{
    lib_unload *u = arg;
    grpc_shutdown();
    pthread_mutex_lock(&u->lock);
    u->done = true;
    pthread_cond_signal(&u->cond);
    pthread_mutex_unlock(&u->lock);
    lib_unload_unref(u);
    return NULL;
}

int rpc_lib_shutdown(int timeout_ms)
{
    lib_unload *u = xcalloc(1, sizeof *u);
    pthread_mutex_init(&u->lock, NULL);
    clock_cond_init(&u->cond);
    u->refs = 2;
    pthread_t th;
    if (pthread_create(&th, NULL, lib_unload_main, u) != 0) {
        /* no thread: unload here, unbounded */
        grpc_shutdown();
        u->refs = 1;
        lib_unload_unref(u);
        return 0;
    }
    pthread_detach(th);

    struct timespec until = clock_deadline_ms(timeout_ms); /* a negative timeout is now */
    pthread_mutex_lock(&u->lock);
    while (!u->done) {
        if (pthread_cond_timedwait(&u->cond, &u->lock, &until) == ETIMEDOUT) {
            break;
        }
    }
    bool done = u->done;
    pthread_mutex_unlock(&u->lock);
    lib_unload_unref(u);
    if (!done) {
        return err_set(TWIG_EDEADLINE, "grpc_shutdown still running after %d ms", timeout_ms);
    }
    return 0;
}

/* ---- shared by server and client (rpc_priv.h) ---- */

grpc_byte_buffer *rpc_bb_from_msg(const ProtobufCMessage *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = xmalloc(n ? n : 1);  /* empty messages are legal */
    protobuf_c_message_pack(msg, buf);
    grpc_slice s = grpc_slice_new(buf, n, free);
    grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return bb;
}

void rpc_arg_int(grpc_arg *args, size_t *n, const char *key, int value)
{
    args[*n].type = GRPC_ARG_INTEGER;
    args[*n].key = (char *)key;
    args[*n].value.integer = value;
    (*n)++;
}

/* ---- status translation ---- */

int rpc_err_to_status(int rc)
{
    switch (rc) {
    case 0:
        return GRPC_STATUS_OK;
    case -EINVAL:
    case TWIG_EINVAL_ARG:
    case TWIG_EMISMATCH:
        return GRPC_STATUS_INVALID_ARGUMENT;
    case TWIG_EFULL:
    case TWIG_ETOOBIG:
    case -ENOMEM:
    case -ENOSPC:
    case -EMSGSIZE:
        return GRPC_STATUS_RESOURCE_EXHAUSTED;
    case TWIG_EDEADLINE:
    case -ETIMEDOUT:
        return GRPC_STATUS_DEADLINE_EXCEEDED;
    case TWIG_ENOTFOUND:
    case -ENOENT:
        return GRPC_STATUS_NOT_FOUND;
    case TWIG_EUNAVAIL:
    case TWIG_ESHUTDOWN:
    case -EAGAIN:
    case -ECONNREFUSED:
    case -ECONNRESET:
        return GRPC_STATUS_UNAVAILABLE;
    case TWIG_ECANCELLED:
    case -ECANCELED:
        return GRPC_STATUS_CANCELLED;
    case TWIG_EUNIMPL:
    case -ENOSYS:
    case -EOPNOTSUPP:
        return GRPC_STATUS_UNIMPLEMENTED;
    case TWIG_EVERSION:
        return GRPC_STATUS_FAILED_PRECONDITION;
    case TWIG_ECORRUPT:
        return GRPC_STATUS_DATA_LOSS;
    case TWIG_EFENCED:   /* a sequencer check failed: the sender must take a new identity */
        return GRPC_STATUS_ABORTED;
    case TWIG_ELEASE: /* the member's lease no longer admits it: it joins again */
        return GRPC_STATUS_UNAUTHENTICATED;
    case -EEXIST:
        return GRPC_STATUS_ALREADY_EXISTS;
    case -EPERM:
    case -EACCES: /* "Permission denied"; twig has no authentication to fail */
        return GRPC_STATUS_PERMISSION_DENIED;
    case -ERANGE:
        return GRPC_STATUS_OUT_OF_RANGE;
    default:
        return GRPC_STATUS_INTERNAL;
    }
}

bool rpc_err_unreachable(int rc)
{
    return rc == TWIG_EUNAVAIL || rc == TWIG_EDEADLINE || rc == TWIG_ECANCELLED;
}

int rpc_status_to_err(int status)
{
    switch (status) {
    case GRPC_STATUS_OK:
        return 0;
    case GRPC_STATUS_CANCELLED:
        return TWIG_ECANCELLED;
    case GRPC_STATUS_INVALID_ARGUMENT:
        return -EINVAL;
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        return TWIG_EDEADLINE;
    case GRPC_STATUS_NOT_FOUND:
        return TWIG_ENOTFOUND;
    case GRPC_STATUS_ALREADY_EXISTS:
        return -EEXIST;
    case GRPC_STATUS_PERMISSION_DENIED:
        return -EPERM;
    case GRPC_STATUS_UNAUTHENTICATED:
        return TWIG_ELEASE;
    case GRPC_STATUS_RESOURCE_EXHAUSTED:
        return TWIG_EFULL;
    case GRPC_STATUS_FAILED_PRECONDITION:
        return TWIG_EVERSION;
    case GRPC_STATUS_OUT_OF_RANGE:
        return -ERANGE;
    case GRPC_STATUS_UNIMPLEMENTED:
        return TWIG_EUNIMPL;
    case GRPC_STATUS_UNAVAILABLE:
        return TWIG_EUNAVAIL;
    case GRPC_STATUS_DATA_LOSS:
        return TWIG_ECORRUPT;
    case GRPC_STATUS_ABORTED:
        return TWIG_EFENCED;
    case GRPC_STATUS_UNKNOWN:
    case GRPC_STATUS_INTERNAL:
    default:
        return TWIG_EINTERNAL;
    }
}

const char *rpc_status_name(int status)
{
    static const char *const names[] = {
        "OK",           "CANCELLED",         "UNKNOWN",        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED", "NOT_FOUND",    "ALREADY_EXISTS", "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
        "UNIMPLEMENTED", "INTERNAL",         "UNAVAILABLE",    "DATA_LOSS",
        "UNAUTHENTICATED",
    };
    if (status >= 0 && status < (int)(sizeof names / sizeof names[0])) {
        return names[status];
    }
    return "UNKNOWN_STATUS";
}
