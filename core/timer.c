#include "timer.h"

#include <errno.h>
#include <stdlib.h>

void timer_heap_init(struct timer_heap *h)
{
    h->items = NULL;
    h->len = h->cap = 0;
}

void timer_heap_free(struct timer_heap *h)
{
    for (size_t i = 0; i < h->len; i++) h->items[i]->index = 0;
    free(h->items);
    timer_heap_init(h);
}

static void place(struct timer_heap *h, size_t i, struct timer *t)
{
    h->items[i] = t;
    t->index = i + 1;
}

static void sift_up(struct timer_heap *h, size_t i)
{
    struct timer *t = h->items[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h->items[parent]->key <= t->key) break;
        place(h, i, h->items[parent]);
        i = parent;
    }
    place(h, i, t);
}

static void sift_down(struct timer_heap *h, size_t i)
{
    struct timer *t = h->items[i];
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        uint64_t mk = t->key;
        if (l < h->len && h->items[l]->key < mk) m = l, mk = h->items[l]->key;
        if (r < h->len && h->items[r]->key < mk) m = r;
        if (m == i) break;
        place(h, i, h->items[m]);
        i = m;
    }
    place(h, i, t);
}

int timer_set(struct timer_heap *h, struct timer *t, uint64_t deadline)
{
    if (timer_armed(t)) {
        t->deadline = deadline;
        if (deadline >= t->key) return 0; /* later: fixed up lazily at the top */
        t->key = deadline;
        sift_up(h, t->index - 1);
        return 0;
    }
    if (h->len == h->cap) {
        size_t cap = h->cap ? h->cap * 2 : 64;
        struct timer **items = realloc(h->items, cap * sizeof(*items));
        if (!items) return -ENOMEM;
        h->items = items;
        h->cap = cap;
    }
    t->deadline = t->key = deadline;
    h->items[h->len] = t;
    t->index = ++h->len;
    sift_up(h, h->len - 1);
    return 0;
}

void timer_cancel(struct timer_heap *h, struct timer *t)
{
    if (!timer_armed(t)) return;
    size_t i = t->index - 1;
    t->index = 0;
    struct timer *last = h->items[--h->len];
    if (i == h->len) return;
    place(h, i, last);
    if (i > 0 && h->items[(i - 1) / 2]->key > last->key) sift_up(h, i);
    else sift_down(h, i);
}

/* Brings the top's key up to its real deadline until the top is exact. */
static struct timer *settle_top(struct timer_heap *h)
{
    while (h->len) {
        struct timer *top = h->items[0];
        if (top->key == top->deadline) return top;
        top->key = top->deadline;
        sift_down(h, 0);
    }
    return NULL;
}

int64_t timer_next_in(struct timer_heap *h, uint64_t now)
{
    struct timer *top = settle_top(h);
    if (!top) return -1;
    if (top->deadline <= now) return 0;
    /* A distance past INT64_MAX would turn negative, i.e. "no timer". */
    uint64_t in = top->deadline - now;
    return in > INT64_MAX ? INT64_MAX : (int64_t)in;
}

size_t timer_run(struct timer_heap *h, uint64_t now)
{
    /* At most as many as were armed on entry: a callback that re-arms its
     * timer for now (a zero timeout) fires on the next turn, not forever. */
    size_t budget = h->len, fired = 0;
    struct timer *top;
    while (fired < budget && (top = settle_top(h)) && top->deadline <= now) {
        timer_cancel(h, top);
        fired++;
        top->cb(top);
    }
    return fired;
}
