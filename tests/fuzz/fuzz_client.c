/* fuzz_client: the client side. Bytes from a client -> llhttp -> the
 * script (client.lua: route, local handlers, proxying to a strict origin)
 * -> bytes back, through the real connection code and the real loop.
 *
 * Input: flags, three cut bytes (where the client's bytes are split into
 * writes), then the client's bytes.
 *   flags & 1   the client shuts down its side after its last byte
 *   flags & 2   every armed timer fires at the end (a day passes)
 *   flags & 4   every armed timer fires after the first write
 *   flags & 8   the client reads nothing until the end
 *   flags & 16  the client closes its socket after its last byte
 * Besides the sanitizers and the harness's teardown checks: the origin
 * must be able to parse everything the proxy sends it, and must never see
 * more requests than route() sent upstream; and a client whose bytes begin
 * with a complete request gets an answer (any answer), not silence. */
#include <llhttp.h>

#include "harness.h"

static int first_done(llhttp_t *p)
{
    return HPE_PAUSED;
}

/* Whether the bytes begin with a complete request, as llhttp sees it. */
static bool begins_with_request(const uint8_t *data, size_t len)
{
    static const llhttp_settings_t settings = {.on_message_complete = first_done};
    llhttp_t p;
    llhttp_init(&p, HTTP_REQUEST, &settings);
    llhttp_errno_t err = llhttp_execute(&p, (const char *)data, len);
    return err == HPE_PAUSED || err == HPE_PAUSED_UPGRADE;
}

void fuzz_client_init(void)
{
    fz_init("client.lua", true);
}

int fuzz_client_one(const uint8_t *data, size_t size)
{
    if (size < 4) return 0;
    uint8_t flags = data[0];
    const uint8_t *p = data + 4;
    size_t n = size - 4;
    size_t starts[FZ_MAX_CUTS + 2];
    int pieces = fz_pieces(data + 1, 3, n, starts);

    fz_begin(flags & 8);
    fz_script_set_number("routed", 0);
    for (int i = 0; i < pieces; i++) {
        fz_client_send(p + starts[i], starts[i + 1] - starts[i]);
        if (i == 0 && (flags & 4)) fz_fire_timers();
    }
    if (flags & 1) fz_client_shutdown();
    if (flags & 16) fz_client_reset();
    if (flags & 2) fz_fire_timers();
    fz_end();

    size_t out;
    fz_client_output(&out);
    if (out == 0 && !(flags & 16) && begins_with_request(p, n))
        fz_fail("the client sent a complete request and got no answer");

    double routed = fz_script_number("routed");
    if ((double)fz_origin_requests() > routed)
        fz_fail("the origin parsed %llu request(s) but route() sent %.0f upstream: a request was smuggled",
                (unsigned long long)fz_origin_requests(), routed);
    return 0;
}

#ifndef FUZZ_NO_ENTRY
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    fuzz_client_init();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    return fuzz_client_one(data, size);
}
#endif
