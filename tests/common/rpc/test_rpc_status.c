/* the twig code <-> gRPC status table of common/rpc/rpc.c, entry by entry: what a handler's
 * error becomes on the wire, and what a client makes of every status */
#include <criterion/criterion.h>
#include <errno.h>

#include "common/base/err.h"
#include "common/rpc/rpc.h"

/* gRPC status numbers (grpc/status.h, which tests may not include) */
enum {
    S_OK = 0,
    S_CANCELLED = 1,
    S_UNKNOWN = 2,
    S_INVALID_ARGUMENT = 3,
    S_DEADLINE_EXCEEDED = 4,
    S_NOT_FOUND = 5,
    S_ALREADY_EXISTS = 6,
    S_PERMISSION_DENIED = 7,
    S_RESOURCE_EXHAUSTED = 8,
    S_FAILED_PRECONDITION = 9,
    S_ABORTED = 10,
    S_OUT_OF_RANGE = 11,
    S_UNIMPLEMENTED = 12,
    S_INTERNAL = 13,
    S_UNAVAILABLE = 14,
    S_DATA_LOSS = 15,
    S_UNAUTHENTICATED = 16,
};

Test(rpc_status, every_twig_code_has_its_status)
{
    static const struct {
        int rc, status;
    } table[] = {
        {0, S_OK},
        {-EINVAL, S_INVALID_ARGUMENT},
        {TWIG_EINVAL_ARG, S_INVALID_ARGUMENT},
        {TWIG_EMISMATCH, S_INVALID_ARGUMENT},
        {TWIG_ECORRUPT, S_DATA_LOSS},
        {TWIG_EVERSION, S_FAILED_PRECONDITION},
        {TWIG_EUNAVAIL, S_UNAVAILABLE},
        {TWIG_ESHUTDOWN, S_UNAVAILABLE},
        {-ECONNREFUSED, S_UNAVAILABLE},
        {TWIG_EDEADLINE, S_DEADLINE_EXCEEDED},
        {-ETIMEDOUT, S_DEADLINE_EXCEEDED},
        {TWIG_ECANCELLED, S_CANCELLED},
        {TWIG_ETOOBIG, S_RESOURCE_EXHAUSTED},
        {TWIG_EFULL, S_RESOURCE_EXHAUSTED},
        {-ENOSPC, S_RESOURCE_EXHAUSTED},
        {TWIG_ENOTFOUND, S_NOT_FOUND},
        {-ENOENT, S_NOT_FOUND},
        {TWIG_EUNIMPL, S_UNIMPLEMENTED},
        {-EEXIST, S_ALREADY_EXISTS},
        {-EPERM, S_PERMISSION_DENIED},
        {-EACCES, S_PERMISSION_DENIED}, /* a file's "Permission denied", not a failed login */
        {-ERANGE, S_OUT_OF_RANGE},
        {TWIG_EFENCED, S_ABORTED},
        {TWIG_ELEASE, S_UNAUTHENTICATED},
        {TWIG_EINTERNAL, S_INTERNAL},
        {TWIG_EDIVERGED, S_INTERNAL},
        {TWIG_EPROTO, S_INTERNAL},
        {-EIO, S_INTERNAL},
    };
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++) {
        int got = rpc_err_to_status(table[i].rc);
        cr_expect_eq(got, table[i].status, "%s -> %s, expected %s", err_name(table[i].rc),
                     rpc_status_name(got), rpc_status_name(table[i].status));
    }
}

Test(rpc_status, every_status_has_the_twig_code_that_sends_it)
{
    /* status -> code -> status is the identity, except the statuses twig never sends:
     * UNKNOWN is an internal error to a twig client */
    for (int s = S_OK; s <= S_UNAUTHENTICATED; s++) {
        int rc = rpc_status_to_err(s);
        cr_expect((s == S_OK) == (rc == 0), "%s -> %s", rpc_status_name(s), err_name(rc));
        int back = rpc_err_to_status(rc);
        if (s == S_UNKNOWN) {
            cr_expect_eq(rc, TWIG_EINTERNAL, "%s -> %s", rpc_status_name(s), err_name(rc));
        } else {
            cr_expect_eq(back, s, "%s -> %s -> %s", rpc_status_name(s), err_name(rc),
                         rpc_status_name(back));
        }
    }
    cr_expect_eq(rpc_status_to_err(S_RESOURCE_EXHAUSTED), TWIG_EFULL, "retryable back-pressure");
    cr_expect_eq(rpc_status_to_err(S_UNAVAILABLE), TWIG_EUNAVAIL);
    cr_expect_eq(rpc_status_to_err(S_ABORTED), TWIG_EFENCED, "a fenced source identity");
    cr_expect_eq(rpc_status_to_err(S_UNAUTHENTICATED), TWIG_ELEASE, "an expired lease");
    cr_expect_eq(rpc_status_to_err(99), TWIG_EINTERNAL, "a status from a newer gRPC");
    cr_expect_eq(rpc_status_to_err(-1), TWIG_EINTERNAL);
}
