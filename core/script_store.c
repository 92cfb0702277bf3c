#include "script_store.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

struct script_store {
    uint32_t seq; /* seqlock over the rest: odd while the master writes */
    uint32_t generation;
    uint32_t len;
    char text[]; /* SCRIPT_STORE_MAX bytes */
};

static struct script_store *store; /* NULL until script_store_create */

static size_t region_size(void)
{
    return sizeof(struct script_store) + SCRIPT_STORE_MAX;
}

int script_store_create(void)
{
    /* Pages nobody touches cost nothing: a small script backs a page or
     * two of the 8 MiB. */
    void *p = mmap(NULL, region_size(), PROT_READ | PROT_WRITE,
                   MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return -errno;
    store = p;
    return 0;
}

void script_store_destroy(void)
{
    if (store) munmap(store, region_size());
    store = NULL;
}

int script_store_put(const char *text, size_t len, uint32_t generation)
{
    if (!store) return -ENODEV;
    if (len >= SCRIPT_STORE_MAX) return -E2BIG;
    __atomic_add_fetch(&store->seq, 1, __ATOMIC_ACQ_REL); /* odd: writing */
    memcpy(store->text, text, len);
    store->text[len] = '\0';
    __atomic_store_n(&store->len, (uint32_t)len, __ATOMIC_RELAXED);
    __atomic_store_n(&store->generation, generation, __ATOMIC_RELAXED);
    __atomic_add_fetch(&store->seq, 1, __ATOMIC_ACQ_REL);
    return 0;
}

char *script_store_get(size_t *len, uint32_t *generation)
{
    if (!store) return NULL;
    for (;;) {
        uint32_t seq = __atomic_load_n(&store->seq, __ATOMIC_ACQUIRE);
        if (seq & 1) {
            usleep(1000);
            continue;
        }
        size_t n = __atomic_load_n(&store->len, __ATOMIC_RELAXED);
        uint32_t gen = __atomic_load_n(&store->generation, __ATOMIC_RELAXED);
        char *copy = malloc(n + 1);
        if (!copy) return NULL;
        memcpy(copy, store->text, n);
        copy[n] = '\0';
        __atomic_thread_fence(__ATOMIC_ACQUIRE);
        if (__atomic_load_n(&store->seq, __ATOMIC_RELAXED) == seq) {
            *len = n;
            *generation = gen;
            return copy;
        }
        free(copy); /* rewritten meanwhile: read it again */
    }
}
