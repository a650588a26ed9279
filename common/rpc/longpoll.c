/* longpoll.c - parked calls on a libuv loop (longpoll.h) */
#include "common/rpc/longpoll.h"

#include <stdlib.h>

#include "common/base/err.h"
#include "common/base/mem.h"

/* one parked call; freed in its timer's close callback */
typedef struct rpc_poll_entry {
    uv_timer_t timer; /* fires when the wait ends */
    rpc_longpoll_t *lp;
    rpc_call_t *call;
    rpc_poll_want want;
    struct rpc_poll_entry *next;
} rpc_poll_entry;

void rpc_longpoll_init(rpc_longpoll_t *lp, uv_loop_t *loop, const rpc_longpoll_ops *ops, void *app)
{
    TWIG_ASSERT(loop && ops && ops->has_news && ops->answer);
    *lp = (rpc_longpoll_t){.loop = loop, .ops = ops, .app = app};
    atomic_init(&lp->n_parked, 0);
}

static void entry_closed(uv_handle_t *h)
{
    free(h->data);
}

static void answer(rpc_longpoll_t *lp, rpc_call_t *call, const rpc_poll_want *w, rpc_poll_end why)
{
    lp->answered[why]++;
    lp->ops->answer(lp->app, call, w, why);
}

/* unlink e, answer its call with why, close its timer (e is freed after the close) */
static void entry_end(rpc_longpoll_t *lp, rpc_poll_entry *e, rpc_poll_end why)
{
    for (rpc_poll_entry **p = &lp->parked; *p; p = &(*p)->next) {
        if (*p == e) {
            *p = e->next;
            break;
        }
    }
    atomic_fetch_sub(&lp->n_parked, 1);
    uv_timer_stop(&e->timer);
    uv_close((uv_handle_t *)&e->timer, entry_closed);
    answer(lp, e->call, &e->want, why);
}

static void entry_on_timeout(uv_timer_t *t)
{
    rpc_poll_entry *e = t->data;
    entry_end(e->lp, e, RPC_POLL_END_TIMEOUT);
}

int rpc_longpoll_park(rpc_longpoll_t *lp, rpc_call_t *call, uint64_t wait_ms,
                      const rpc_poll_want *w)
{
    uint64_t wait = rpc_call_poll_ms(call, wait_ms);
    rpc_poll_end why = RPC_POLL_END_COUNT;
    if (lp->closed) {
        why = RPC_POLL_END_SHUTDOWN;
    } else if (lp->ops->has_news(lp->app, w)) {
        why = RPC_POLL_END_NEWS;
    } else if (wait == 0) {
        why = RPC_POLL_END_TIMEOUT;
    }
    if (why != RPC_POLL_END_COUNT) {
        answer(lp, call, w, why);
        return 0;
    }
    rpc_poll_entry *e = xcalloc(1, sizeof *e);
    e->lp = lp;
    e->call = call;
    e->want = *w;
    uv_timer_init(lp->loop, &e->timer);
    e->timer.data = e;
    uv_timer_start(&e->timer, entry_on_timeout, wait, 0);
    e->next = lp->parked;
    lp->parked = e;
    atomic_fetch_add(&lp->n_parked, 1);
    return RPC_DEFER;
}

unsigned rpc_longpoll_notify(rpc_longpoll_t *lp)
{
    unsigned n = 0;
    rpc_poll_entry *e = lp->parked;
    while (e) {
        rpc_poll_entry *next = e->next; /* entry_end unlinks e */
        if (lp->ops->has_news(lp->app, &e->want)) {
            entry_end(lp, e, RPC_POLL_END_NEWS);
            n++;
        }
        e = next;
    }
    return n;
}

void rpc_longpoll_close(rpc_longpoll_t *lp)
{
    lp->closed = true;
    while (lp->parked) {
        entry_end(lp, lp->parked, RPC_POLL_END_SHUTDOWN);
    }
}

unsigned rpc_longpoll_parked(const rpc_longpoll_t *lp)
{
    return atomic_load(&lp->n_parked);
}
