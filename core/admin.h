/* admin: the --admin listener's answers. GET /metrics is the Prometheus
 * text format, summed over every worker's slot in shared memory; GET
 * /status is JSON: the master, the reload generation, and per worker its
 * pid, connections and upstreams (each server up or down, requests in
 * flight, idle pooled connections). Any worker can answer: it reads the
 * others' slots, where each publishes its own part at least once a second. */
#pragma once
#include "http.h"
#include "script.h"

/* Fills rep for the request (the body stays valid until the next call). */
void admin_reply(const struct http_request *req, const char *base, struct script_reply *rep);
/* This worker's /status part, into its slot. */
void admin_publish(void);
