#include "balance.h"

#include "script.h"

int balance_choose(struct script_req *sr, struct upstream *u, const bool *tried, uint64_t now,
                   struct server **s)
{
    *s = NULL;
    if (u->balance == BALANCE_LUA) return script_balance(sr, u, tried, s);
    uint32_t key = 0;
    if (u->balance == BALANCE_HASH && script_hash_key(sr, u, &key)) return -1;
    *s = upstream_pick(u, key, tried, now);
    return 0;
}
