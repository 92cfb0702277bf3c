/* timer: a binary min-heap of deadlines (milliseconds on a monotonic clock).
 *
 * Insert and cancel are O(log n); pushing a deadline later (the common case:
 * a keep-alive connection's idle timer on every request) is O(1), because the
 * heap keeps the old, earlier key and the timer is sifted down only when that
 * key reaches the top. The cost of a loop turn is O(1) plus O(log n) per timer
 * that actually fires, whatever the number of connections. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct timer;
typedef void (*timer_cb)(struct timer *t);

struct timer {
    uint64_t deadline; /* when it fires */
    uint64_t key;      /* its position key in the heap, <= deadline */
    size_t index;      /* slot in the heap + 1; 0 = not armed */
    timer_cb cb;
};

struct timer_heap {
    struct timer **items;
    size_t len, cap;
};

void timer_heap_init(struct timer_heap *h);
void timer_heap_free(struct timer_heap *h);
static inline bool timer_armed(const struct timer *t)
{
    return t->index != 0;
}
/* Arms (or re-arms) t to fire at deadline. Returns 0 or -ENOMEM. */
int timer_set(struct timer_heap *h, struct timer *t, uint64_t deadline);
void timer_cancel(struct timer_heap *h, struct timer *t);
/* Milliseconds until the next deadline from now, or -1 when none is armed. */
int64_t timer_next_in(struct timer_heap *h, uint64_t now);
/* Fires every timer whose deadline is <= now (each is disarmed before its
 * callback, which may re-arm it). Returns how many fired. */
size_t timer_run(struct timer_heap *h, uint64_t now);
