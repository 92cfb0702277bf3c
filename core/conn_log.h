/* conn_log: the log lines and metrics of a client connection's requests
 * (conn.c calls them; they read the connection and its request context). */
#pragma once
#include <stdint.h>

#include "conn.h"

/* The request is over (answered, or given up on): metrics and the access
 * log, once. status 0 = no answer (logged as 499, nginx's "client closed"). */
void conn_log_request(struct conn *c, int status);
/* The info line of a rejected request (at most 10 a second per worker). */
void conn_log_rejection(struct conn *c, int status);
/* A monotonic clock in microseconds (request times). */
uint64_t conn_clock_us(void);
