#include "health_http.h"

#include <string.h>
#include <strings.h>

void health_resp_init(struct health_resp *r)
{
    memset(r, 0, sizeof(*r));
}

int health_parse_status(const char *buf, size_t len)
{
    static const char prefix[] = "HTTP/1.";
    for (size_t i = 0; i < len && i < 7; i++)
        if (buf[i] != prefix[i]) return -1;
    if (len < 12) return 0;
    if ((buf[7] != '0' && buf[7] != '1') || buf[8] != ' ') return -1;
    int st = 0;
    for (int i = 9; i < 12; i++) {
        if (buf[i] < '0' || buf[i] > '9') return -1;
        st = st * 10 + (buf[i] - '0');
    }
    return st >= 100 && st <= 599 ? st : -1;
}

/* Does the comma-separated value hold the token (any case)? */
static bool has_token(const char *v, size_t n, const char *token)
{
    size_t tl = strlen(token);
    for (size_t i = 0; i + tl <= n; i++)
        if (!strncasecmp(v + i, token, tl)) return true;
    return false;
}

static void header_line(struct health_resp *r, const char *s, size_t n)
{
    const char *colon = memchr(s, ':', n);
    if (!colon) return;
    size_t nl = (size_t)(colon - s);
    const char *v = colon + 1;
    size_t vl = n - nl - 1;
    while (vl && (*v == ' ' || *v == '\t')) v++, vl--;
    if (nl == 14 && !strncasecmp(s, "content-length", 14)) {
        uint64_t x = 0;
        size_t i = 0;
        for (; i < vl && v[i] >= '0' && v[i] <= '9' && x < (1ull << 50); i++) x = x * 10 + (uint64_t)(v[i] - '0');
        if (i == 0 || (r->length_seen && x != r->length)) r->chunked = true; /* unusable: read to the end */
        r->length = x;
        r->length_seen = true;
    } else if (nl == 17 && !strncasecmp(s, "transfer-encoding", 17)) {
        r->chunked = true;
    } else if (nl == 10 && !strncasecmp(s, "connection", 10)) {
        if (has_token(v, vl, "close")) r->close = true;
    }
}

/* The head is over: where the body ends decides whether the connection
 * can be kept. A 1xx (other than a final answer) is not followed. */
static void head_done(struct health_resp *r)
{
    bool bodiless = r->status == 204 || r->status == 304;
    if (r->status < 200) {
        r->state = HR_UNTIL_CLOSE;
    } else if (!r->chunked && (bodiless || r->length_seen)) {
        r->left = bodiless ? 0 : r->length;
        r->state = r->left ? HR_BODY : HR_DONE;
        r->keep = r->keep && !r->close;
    } else {
        r->state = HR_UNTIL_CLOSE;
    }
    if (r->state == HR_UNTIL_CLOSE) r->keep = false;
}

static void line_done(struct health_resp *r)
{
    size_t n = r->len;
    if (n && r->line[n - 1] == '\r') n--;
    if (r->state == HR_STATUS) {
        int st = r->len >= 12 ? health_parse_status(r->line, r->len) : -1;
        if (st <= 0) {
            r->state = HR_BAD;
            return;
        }
        r->status = st;
        r->keep = r->line[7] == '1';
        r->state = HR_HEADERS;
    } else if (n == 0 && !r->long_line) {
        head_done(r);
    } else if (!r->long_line) {
        header_line(r, r->line, n);
    }
    r->len = 0;
    r->long_line = false;
}

enum health_resp_state health_resp_feed(struct health_resp *r, const char *p, size_t n)
{
    for (size_t i = 0; i < n;) {
        switch (r->state) {
        case HR_STATUS:
        case HR_HEADERS: {
            const char *nl = memchr(p + i, '\n', n - i);
            size_t take = nl ? (size_t)(nl - (p + i)) : n - i;
            size_t room = sizeof(r->line) - r->len;
            if (take > room) r->long_line = true;
            memcpy(r->line + r->len, p + i, take < room ? take : room);
            r->len += (uint16_t)(take < room ? take : room);
            if (r->state == HR_STATUS && health_parse_status(r->line, r->len) < 0) {
                r->state = HR_BAD;
                return r->state;
            }
            i += take;
            if (!nl) return r->state;
            i++;
            line_done(r);
            break;
        }
        case HR_BODY: {
            uint64_t take = n - i < r->left ? n - i : r->left;
            r->left -= take;
            i += (size_t)take;
            if (!r->left) r->state = HR_DONE;
            break;
        }
        case HR_UNTIL_CLOSE:
            return r->state;
        case HR_DONE: /* more than the response said: the connection is not reused */
            r->keep = false;
            r->state = HR_BAD;
            return r->state;
        case HR_BAD:
            return r->state;
        }
    }
    return r->state;
}
