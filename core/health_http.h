/* health_http: reading a health probe's response, byte by byte as it
 * comes, far enough to know its status and where it ends, so that the
 * probe's connection can carry the next probe when the server keeps it
 * alive. Pure: no sockets here. */
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum health_resp_state {
    HR_STATUS,      /* the status line is awaited */
    HR_HEADERS,     /* the status is known; the head goes on */
    HR_BODY,        /* a Content-Length body: `left` bytes to come */
    HR_UNTIL_CLOSE, /* chunked, unframed, or not worth following: read until the server closes */
    HR_DONE,        /* the whole response is in; `keep`: the connection may be reused */
    HR_BAD,         /* not an HTTP/1.x response, or bytes past its end: close */
};

struct health_resp {
    enum health_resp_state state;
    int status;       /* 100..599 once the status line is in; 0 before */
    bool keep;        /* HTTP/1.1, no Connection: close, framed by a length */
    bool length_seen, chunked, close;
    bool long_line;   /* the current line is longer than line[]: its tail is skipped */
    uint64_t length;  /* Content-Length */
    uint64_t left;    /* body bytes still to come (HR_BODY) */
    uint16_t len;     /* bytes of the current line in line[] */
    char line[120];
};

void health_resp_init(struct health_resp *r);
/* Feeds the next n bytes of the response; returns the state after them. */
enum health_resp_state health_resp_feed(struct health_resp *r, const char *p, size_t n);

/* The status of an HTTP/1.x status line at the start of buf: 100..599, 0
 * when more bytes are needed, -1 when it is not one. */
int health_parse_status(const char *buf, size_t len);
