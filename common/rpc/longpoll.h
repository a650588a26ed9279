/* longpoll.h - the one long poll: calls parked on a libuv loop until there is news for them,
 * their wait ends, or the server shuts down.
 *
 * A long poll asks "anything newer than what I have?" and waits up to wait_ms for a yes.
 * Every poll in twig (GetPolicy, FetchReal, GetModel) has the same life, so it lives here once:
 *
 *     static bool has_news(void *app, const rpc_poll_want *w)    // newer than w->have?
 *     {
 *         return ((my_app *)app)->version > w->have;
 *     }
 *     static void answer(void *app, rpc_call_t *call, const rpc_poll_want *w, rpc_poll_end why)
 *     {
 *         reply_version_or_empty(app, call, w, why);             // exactly one rpc_call_reply
 *     }
 *     static const rpc_longpoll_ops ops = {has_news, answer};
 *     rpc_longpoll_init(&app->polls, &loop, &ops, app);
 *
 *     // in an RPC_RUN_ON_LOOP handler, after answering what can be answered now:
 *     return rpc_longpoll_park(&app->polls, call, q->wait_ms, &(rpc_poll_want){.have = v});
 *     // when something new was published (loop thread, e.g. from a uv_async callback):
 *     rpc_longpoll_notify(&app->polls);
 *     // at shutdown (loop thread): every parked call answered RPC_POLL_END_SHUTDOWN
 *     rpc_longpoll_close(&app->polls);
 *
 *   - Deadline. A call parks for rpc_call_poll_ms(call, wait_ms): the requested wait, cut so
 *     the answer leaves RPC_POLL_MARGIN_MS before the client's deadline. A client therefore
 *     gets its "nothing yet" reply, never DEADLINE_EXCEEDED.
 *   - Threads. Everything but rpc_longpoll_parked runs on the loop's thread, callbacks too.
 *     News made on another thread reaches the loop through the owner's uv_async, whose
 *     callback calls rpc_longpoll_notify (sends coalesce; notify looks at every parked call).
 *   - Memory. Each parked call holds one allocation with its timer, released in the timer's
 *     close callback: after rpc_longpoll_close, let the loop run once more before
 *     uv_loop_close (twig's processes do: the rpc server closes its handles the same way).
 */
#ifndef TWIG_LONGPOLL_H
#define TWIG_LONGPOLL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <uv.h>

#include "common/rpc/rpc.h"

/* why a parked (or parking) call is answered */
typedef enum rpc_poll_end {
    RPC_POLL_END_NEWS = 0,     /* has_news said yes */
    RPC_POLL_END_TIMEOUT = 1,  /* its wait ended (or there was no time left to park) */
    RPC_POLL_END_SHUTDOWN = 2, /* rpc_longpoll_close ran */
    RPC_POLL_END_COUNT = 3,
} rpc_poll_end;

/* what a call is waiting for, copied when it parks: what the client already has (a version,
 * a log offset) and one more request field the answer needs (e.g. max_count) */
typedef struct rpc_poll_want {
    uint64_t have;
    uint64_t arg;
} rpc_poll_want;

typedef struct rpc_longpoll_ops {
    /* is there news for a call waiting for w? Loop thread; must not reply */
    bool (*has_news)(void *app, const rpc_poll_want *w);
    /* reply to call (exactly once, rpc_call_reply); why says what ended the wait */
    void (*answer)(void *app, rpc_call_t *call, const rpc_poll_want *w, rpc_poll_end why);
} rpc_longpoll_ops;

struct rpc_poll_entry;

typedef struct rpc_longpoll {
    uv_loop_t *loop;               /* borrowed */
    const rpc_longpoll_ops *ops;   /* borrowed */
    void *app;                     /* handed to ops; borrowed */
    struct rpc_poll_entry *parked; /* loop thread only */
    atomic_uint n_parked;          /* their number, for status replies (any thread) */
    bool closed;
    uint64_t answered[RPC_POLL_END_COUNT]; /* calls answered by park/notify/close, per end;
                                            * loop thread (tests and stats read them) */
} rpc_longpoll_t;

/* fill lp (nothing to free but what rpc_longpoll_close ends); loop, ops and app borrowed */
void rpc_longpoll_init(rpc_longpoll_t *lp, uv_loop_t *loop, const rpc_longpoll_ops *ops, void *app);

/* park call for up to wait_ms (cut by the client's deadline, see Deadline) waiting for *w
 * (copied). Answers at once instead, and returns 0, when lp is closed (SHUTDOWN), when no time
 * is left (TIMEOUT) or when has_news already says yes (NEWS: news made just before parking
 * is not missed). Returns RPC_DEFER when parked: return that from the handler. */
int rpc_longpoll_park(rpc_longpoll_t *lp, rpc_call_t *call, uint64_t wait_ms,
                      const rpc_poll_want *w);

/* answer every parked call that has_news says yes to; returns how many */
unsigned rpc_longpoll_notify(rpc_longpoll_t *lp);

/* answer every parked call with SHUTDOWN; later parks answer SHUTDOWN at once. Idempotent */
void rpc_longpoll_close(rpc_longpoll_t *lp);

/* calls parked now; any thread */
unsigned rpc_longpoll_parked(const rpc_longpoll_t *lp);

#endif
