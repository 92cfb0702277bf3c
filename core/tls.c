/* tls: the listeners' certificates, their contexts, SNI and the shared
 * session-ticket keys (see tls.h). The connections' reads and writes are
 * in tls_io.c. */
#include "tls.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "log.h"
#include "stats.h"

/* Mozilla's "intermediate" profile, without its DHE suites: ECDHE with
 * AES-GCM or ChaCha20-Poly1305 for TLS 1.2, every TLS 1.3 suite. */
#define CIPHERS_12                                                                                    \
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"        \
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define CIPHERS_13 "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
#define GROUPS "X25519:P-256:P-384"

/* Ticket keys rotate every period and at every reload; a ticket made with
 * the key before the current one is still accepted (and renewed), so one
 * issued within the last period always resumes. */
#define TICKET_PERIOD_S 3600

struct cert {
    SSL_CTX *ctx;
    char **names; /* DNS names of its subjectAltName (or its CN): "*.a.b" too */
    int nnames;
    char *file;
};

struct cert_set {
    struct cert *v; /* v[0] is the default */
    int n;
};

static struct cert_set live;
static unsigned char ticket_secret[32];

int tls_init(void)
{
    return RAND_bytes(ticket_secret, sizeof(ticket_secret)) == 1 ? 0 : -1;
}

/* ---- session tickets ----------------------------------------------------- */

struct ticket_key {
    uint64_t epoch;
    bool set;
    unsigned char name[16], aes[32], hmac[32];
};

/* The epoch counts periods since 1970 plus reloads: every worker computes
 * the same one at once (the generation is in shared memory) and derives
 * the same keys from the secret it inherited. */
static uint64_t ticket_epoch(void)
{
    return (uint64_t)time(NULL) / TICKET_PERIOD_S + (ST ? STAT_GET(ST->generation) : 0);
}

static void derive(unsigned char label, uint64_t epoch, unsigned char *out, size_t n)
{
    unsigned char msg[9], mac[32];
    size_t len = 0;
    msg[0] = label;
    memcpy(msg + 1, &epoch, 8);
    if (!EVP_Q_mac(NULL, "HMAC", NULL, "SHA256", NULL, ticket_secret, sizeof(ticket_secret), msg, sizeof(msg), mac,
                   sizeof(mac), &len))
        memset(mac, 0, sizeof(mac)); /* cannot happen with the default provider; tickets then fail to decrypt */
    memcpy(out, mac, n);
}

static const struct ticket_key *key_for(uint64_t epoch)
{
    static struct ticket_key cache[3];
    for (int i = 0; i < 3; i++)
        if (cache[i].set && cache[i].epoch == epoch) return &cache[i];
    int oldest = 0;
    for (int i = 1; i < 3; i++)
        if (!cache[i].set || cache[i].epoch < cache[oldest].epoch) oldest = i;
    struct ticket_key *k = &cache[oldest];
    derive('n', epoch, k->name, sizeof(k->name));
    derive('a', epoch, k->aes, sizeof(k->aes));
    derive('h', epoch, k->hmac, sizeof(k->hmac));
    k->epoch = epoch;
    k->set = true;
    return k;
}

static int mac_init(EVP_MAC_CTX *hctx, const struct ticket_key *k)
{
    static char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, (void *)k->hmac, sizeof(k->hmac)),
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end(),
    };
    return EVP_MAC_CTX_set_params(hctx, params) == 1 ? 0 : -1;
}

static int ticket_cb(SSL *ssl, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx, EVP_MAC_CTX *hctx,
                     int enc)
{
    uint64_t e = ticket_epoch();
    if (enc) {
        const struct ticket_key *k = key_for(e);
        memcpy(name, k->name, 16);
        if (RAND_bytes(iv, 16) != 1) return -1;
        if (EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1 || mac_init(hctx, k)) return -1;
        return 1;
    }
    for (uint64_t back = 0; back < 2 && back <= e; back++) {
        const struct ticket_key *k = key_for(e - back);
        if (memcmp(name, k->name, 16)) continue;
        if (mac_init(hctx, k) || EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k->aes, iv) != 1) return -1;
        /* 2: resumed, and a fresh ticket is sent, always: a client never
         * has to show the same ticket twice (RFC 8446 §C.4), as with nginx. */
        return 2;
    }
    return 0; /* unknown or too old: a full handshake */
}

/* ---- SNI ----------------------------------------------------------------- */

bool tls_name_matches(const char *pattern, const char *host)
{
    if (!strcasecmp(pattern, host)) return true;
    if (pattern[0] != '*' || pattern[1] != '.') return false;
    const char *dot = strchr(host, '.'); /* a wildcard stands for one label */
    return dot && dot != host && !strcasecmp(dot + 1, pattern + 2);
}

static const struct cert *cert_for(const struct cert_set *set, const char *host)
{
    for (int i = 0; i < set->n; i++) /* exact names first, in any certificate */
        for (int j = 0; j < set->v[i].nnames; j++)
            if (set->v[i].names[j][0] != '*' && !strcasecmp(set->v[i].names[j], host)) return &set->v[i];
    for (int i = 0; i < set->n; i++)
        for (int j = 0; j < set->v[i].nnames; j++)
            if (tls_name_matches(set->v[i].names[j], host)) return &set->v[i];
    return NULL;
}

static int sni_cb(SSL *ssl, int *alert, void *arg)
{
    const char *host = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!host || !live.n) return SSL_TLSEXT_ERR_OK; /* the default certificate */
    const struct cert *c = cert_for(&live, host);
    if (c && c->ctx != SSL_get_SSL_CTX(ssl)) SSL_set_SSL_CTX(ssl, c->ctx);
    return SSL_TLSEXT_ERR_OK;
}

static int alpn_cb(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                   unsigned int inlen, void *arg)
{
    static const unsigned char ours[] = "\x08http/1.1";
    unsigned char *sel;
    if (SSL_select_next_proto(&sel, outlen, ours, sizeof(ours) - 1, in, inlen) != OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK; /* no ALPN answer; HTTP/1.1 is all we speak anyway */
    *out = sel;
    return SSL_TLSEXT_ERR_OK;
}

/* ---- certificates -------------------------------------------------------- */

static void ssl_reason(char *out, size_t n)
{
    unsigned long e = ERR_get_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(out, n, "%s", r ? r : "unknown error");
    ERR_clear_error();
}

/* The option names a list can mix: TLS 1.3 suites are "TLS_...". */
static int set_ciphers(SSL_CTX *ctx, const char *list, char *err, size_t errlen)
{
    char l12[1024] = "", l13[512] = "";
    if (list) {
        char copy[1536];
        snprintf(copy, sizeof(copy), "%s", list);
        for (char *save, *tok = strtok_r(copy, ":, ", &save); tok; tok = strtok_r(NULL, ":, ", &save)) {
            char *to = strncmp(tok, "TLS_", 4) ? l12 : l13;
            size_t cap = to == l12 ? sizeof(l12) : sizeof(l13), len = strlen(to);
            snprintf(to + len, cap - len, "%s%s", len ? ":" : "", tok);
        }
    }
    if (SSL_CTX_set_cipher_list(ctx, l12[0] ? l12 : CIPHERS_12) != 1 ||
        SSL_CTX_set_ciphersuites(ctx, l13[0] ? l13 : CIPHERS_13) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "--tls-ciphers: bad value '%s' (no cipher of it is known to OpenSSL)", list);
        return -1;
    }
    return 0;
}

static SSL_CTX *server_ctx(const struct config *cfg, char *err, size_t errlen)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "TLS: cannot create a context (out of memory)");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, cfg->tls_min_version == 13 ? TLS1_3_VERSION : TLS1_2_VERSION);
    /* Our order of suites wins (testssl rates a client-chosen order as a
     * high finding, though Mozilla's profile leaves it to the client);
     * ChaCha20 first for a client that prefers it (no AES instructions). */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF |
                                 SSL_OP_ENABLE_KTLS | SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA);
    /* Partial, moving writes: a write says how much it took, as send()
     * does, and the caller's buffer may have moved when it retries. The
     * buffers go when the connection goes idle (transport_idle), so an idle
     * keep-alive connection holds none. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (set_ciphers(ctx, cfg->tls_ciphers, err, errlen) || SSL_CTX_set1_groups_list(ctx, GROUPS) != 1) {
        if (!err[0]) snprintf(err, errlen, "TLS: the key exchange groups " GROUPS " are not available");
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, NULL);
    /* One recv() takes what has come (several records, or a record whole)
     * instead of a header and then its body. */
    SSL_CTX_set_read_ahead(ctx, 1);
    SSL_CTX_set_tlsext_servername_callback(ctx, sni_cb);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"luaproxy", 8);
    /* Resumption is by tickets only, which any worker can decrypt; a
     * server-side session cache would be one worker's own. */
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
    SSL_CTX_set_timeout(ctx, TICKET_PERIOD_S);
    SSL_CTX_set_num_tickets(ctx, 1);
    return ctx;
}

static void time_text(const ASN1_TIME *t, char *out, size_t n)
{
    struct tm tm;
    if (ASN1_TIME_to_tm(t, &tm) != 1 || !strftime(out, n, "%Y-%m-%d %H:%M:%S UTC", &tm)) snprintf(out, n, "?");
}

static int add_name(struct cert *c, const char *name, size_t len)
{
    char **v = realloc(c->names, (size_t)(c->nnames + 1) * sizeof(*v));
    if (!v) return -1;
    c->names = v;
    if (!(v[c->nnames] = strndup(name, len))) return -1;
    c->nnames++;
    return 0;
}

static int cert_names(struct cert *c, X509 *x)
{
    GENERAL_NAMES *sans = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int rc = 0;
    for (int i = 0; sans && i < sk_GENERAL_NAME_num(sans) && !rc; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(sans, i);
        if (g->type != GEN_DNS) continue;
        rc = add_name(c, (const char *)ASN1_STRING_get0_data(g->d.dNSName), (size_t)ASN1_STRING_length(g->d.dNSName));
    }
    GENERAL_NAMES_free(sans);
    if (!rc && !c->nnames) { /* no DNS names: the subject's common name, as clients used to */
        char cn[256];
        int len = X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
        if (len > 0) rc = add_name(c, cn, (size_t)len);
    }
    return rc;
}

static void cert_free(struct cert *c)
{
    SSL_CTX_free(c->ctx);
    for (int i = 0; i < c->nnames; i++) free(c->names[i]);
    free(c->names);
    free(c->file);
    memset(c, 0, sizeof(*c));
}

static int cert_load(const struct config *cfg, const char *file, struct cert *c, char *err, size_t errlen)
{
    char why[256];
    memset(c, 0, sizeof(*c));
    if (access(file, R_OK) == -1) {
        snprintf(err, errlen, "--tls-cert %s: cannot read it: %s", file, strerror(errno));
        return -1;
    }
    if (!(c->ctx = server_ctx(cfg, err, errlen))) return -1;
    c->file = strdup(file);
    if (SSL_CTX_use_certificate_chain_file(c->ctx, file) != 1) {
        ssl_reason(why, sizeof(why));
        snprintf(err, errlen, "--tls-cert %s: no usable certificate in it (%s)", file, why);
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(c->ctx, file, SSL_FILETYPE_PEM) != 1) {
        ssl_reason(why, sizeof(why));
        snprintf(err, errlen, "--tls-cert %s: no usable private key in it (%s)", file, why);
        goto fail;
    }
    if (SSL_CTX_check_private_key(c->ctx) != 1) {
        ERR_clear_error();
        snprintf(err, errlen, "--tls-cert %s: the private key does not match the certificate", file);
        goto fail;
    }
    X509 *x = SSL_CTX_get0_certificate(c->ctx);
    char when[64];
    if (X509_cmp_current_time(X509_get0_notAfter(x)) <= 0) {
        time_text(X509_get0_notAfter(x), when, sizeof(when));
        snprintf(err, errlen, "--tls-cert %s: the certificate expired on %s", file, when);
        goto fail;
    }
    if (X509_cmp_current_time(X509_get0_notBefore(x)) >= 0) {
        time_text(X509_get0_notBefore(x), when, sizeof(when));
        snprintf(err, errlen, "--tls-cert %s: the certificate is not valid before %s", file, when);
        goto fail;
    }
    if (!c->file || cert_names(c, x)) {
        snprintf(err, errlen, "--tls-cert %s: out of memory", file);
        goto fail;
    }
    return 0;
fail:
    cert_free(c);
    return -1;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void set_free(struct cert_set *s)
{
    for (int i = 0; i < s->n; i++) cert_free(&s->v[i]);
    free(s->v);
    s->v = NULL;
    s->n = 0;
}

static int set_add(const struct config *cfg, struct cert_set *s, const char *file, char *err, size_t errlen)
{
    struct cert *v = realloc(s->v, (size_t)(s->n + 1) * sizeof(*v));
    if (!v) {
        snprintf(err, errlen, "--tls-cert %s: out of memory", file);
        return -1;
    }
    s->v = v;
    if (cert_load(cfg, file, &s->v[s->n], err, errlen)) return -1;
    s->n++;
    return 0;
}

/* A directory: its files (not hidden ones) in name order. */
static int set_add_dir(const struct config *cfg, struct cert_set *s, const char *dir, DIR *d, char *err,
                       size_t errlen)
{
    char **files = NULL;
    int n = 0, rc = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        char path[4096];
        struct stat st;
        snprintf(path, sizeof(path), "%s/%s", dir, e->d_name);
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode)) continue; /* a subdirectory is not a certificate */
        char **f = realloc(files, (size_t)(n + 1) * sizeof(*f));
        if (!f || !(f[n] = strdup(path))) {
            files = f ? f : files;
            rc = -1;
            snprintf(err, errlen, "--tls-cert %s: out of memory", dir);
            break;
        }
        files = f;
        n++;
    }
    if (!rc && !n) {
        snprintf(err, errlen, "--tls-cert %s: the directory holds no certificate file", dir);
        rc = -1;
    }
    if (!rc) qsort(files, (size_t)n, sizeof(*files), by_name);
    for (int i = 0; !rc && i < n; i++) rc = set_add(cfg, s, files[i], err, errlen);
    for (int i = 0; i < n; i++) free(files[i]);
    free(files);
    return rc;
}

int tls_server_load(const struct config *cfg, bool install, char *err, size_t errlen)
{
    struct cert_set s = {0};
    if (err && errlen) err[0] = '\0';
    for (int i = 0; i < cfg->ntls_certs; i++) {
        const char *path = cfg->tls_certs[i];
        DIR *d = opendir(path);
        int rc = d ? set_add_dir(cfg, &s, path, d, err, errlen) : set_add(cfg, &s, path, err, errlen);
        if (d) closedir(d);
        if (rc) {
            set_free(&s);
            return -1;
        }
    }
    if (!install) {
        set_free(&s);
        return 0;
    }
    /* Connections in service hold references to their contexts. */
    set_free(&live);
    live = s;
    return 0;
}

void tls_server_free(void)
{
    set_free(&live);
}

int tls_accept(struct transport *t)
{
    if (!live.n) return -1;
    SSL *ssl = SSL_new(live.v[0].ctx);
    if (!ssl) return -1;
    if (SSL_set_fd(ssl, t->io.fd) != 1) {
        SSL_free(ssl);
        return -1;
    }
    SSL_set_accept_state(ssl);
    t->ssl = ssl;
    t->ops = &transport_tls;
    return 0;
}
