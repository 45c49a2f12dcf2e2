/* Session tickets with shared, rotated keys.
 *
 * Why our own write/parse callbacks and not mbedTLS's ssl_ticket module:
 * mbedtls_ssl_ticket_context holds two keys, and rotating it (by
 * mbedtls_ssl_ticket_rotate, or by itself when a key's lifetime passes,
 * checked on every write and parse) replaces the older one with a key of
 * its own making: it cannot keep previous, current and next at once, and
 * its self-rotation would give each worker a different key. Here the
 * master decides every key (common/ticket_keys.c); a worker issues with
 * the current one and accepts any of the three, picked by the key name at
 * the head of the ticket.
 *
 * Ticket: name[4] | iv[12] | len[2] | AES-256-GCM(session state)[len] |
 * tag[16]; the first 18 bytes are the additional authenticated data. The
 * state is mbedtls_ssl_session_save's serialisation, as mbedTLS's own
 * tickets carry it. */
#include "worker/tls_tickets.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <mbedtls/gcm.h>
#include <mbedtls/platform_util.h>

#include "common/log.h"
#include "common/shm.h"
#include "common/ticket_keys.h"
#include "worker/core.h"
#include "worker/tls.h"

#define IV_LEN 12
#define LEN_LEN 2
#define TAG_LEN 16
#define HEAD_LEN (TICKET_NAME_LEN + IV_LEN + LEN_LEN)

struct tls_tickets {
    struct tls_tickets *next; /* every listener's, for tls_tick */
    struct shm *shm;
    char *listener;
    int idx;                  /* entry in the shared memory */
    struct ticket_entry view; /* names, times; the key bytes zeroed */
    mbedtls_gcm_context gcm[TICKET_SLOTS];
    mbedtls_f_rng_t *rng;
    void *rng_ctx;
};

static struct tls_tickets *all;
static uint32_t seen_gen;

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME_COARSE, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Copy the entry and set up a cipher per key present. A slot whose key is
 * missing or fails to install is marked empty: tickets under it no longer
 * resume (a full handshake), nothing worse. */
static int install(struct tls_tickets *t)
{
    struct ticket_entry e;
    if (t->idx < 0 || ticket_entry_read(t->shm, (unsigned)t->idx, t->listener, &e) < 0) {
        t->idx = ticket_entry_find(t->shm, t->listener);
        if (t->idx < 0 || ticket_entry_read(t->shm, (unsigned)t->idx, t->listener, &e) < 0) {
            mbedtls_platform_zeroize(&e, sizeof(e));
            return -1;
        }
    }
    int rc = 0;
    for (int i = 0; i < TICKET_SLOTS; i++) {
        struct ticket_key *k = &e.keys[i];
        if (k->created_ms &&
            mbedtls_gcm_setkey(&t->gcm[i], MBEDTLS_CIPHER_ID_AES, k->key, 8 * TICKET_KEY_LEN)) {
            k->created_ms = 0;
            rc = -1;
        }
        mbedtls_platform_zeroize(k->key, sizeof(k->key));
    }
    t->view = e;
    mbedtls_platform_zeroize(&e, sizeof(e));
    if (!t->view.keys[TICKET_CUR].created_ms) rc = -1;
    return rc;
}

struct tls_tickets *tls_tickets_new(struct shm *shm, const char *listener, mbedtls_f_rng_t *rng,
                                    void *rng_ctx)
{
    struct tls_tickets *t = calloc(1, sizeof(*t));
    if (!t || !(t->listener = strdup(listener))) {
        free(t);
        log_error("TLS: session tickets of listener %s: out of memory", listener);
        return NULL;
    }
    t->shm = shm;
    t->idx = -1;
    t->rng = rng;
    t->rng_ctx = rng_ctx;
    for (int i = 0; i < TICKET_SLOTS; i++)
        mbedtls_gcm_init(&t->gcm[i]);
    if (!all) seen_gen = ticket_generation(shm);
    if (install(t) < 0) {
        log_error("TLS: no session ticket keys for listener %s: it issues no tickets", listener);
        for (int i = 0; i < TICKET_SLOTS; i++)
            mbedtls_gcm_free(&t->gcm[i]);
        free(t->listener);
        free(t);
        return NULL;
    }
    t->next = all;
    all = t;
    return t;
}

void tls_tick(struct worker *w)
{
    if (!all) return;
    uint32_t gen = ticket_generation(all->shm);
    if (gen == seen_gen) return;
    seen_gen = gen;
    for (struct tls_tickets *t = all; t; t = t->next)
        if (install(t) < 0)
            log_warn("TLS: session ticket keys of listener %s: kept the old ones", t->listener);
}

static int ticket_write(void *p, const mbedtls_ssl_session *session, unsigned char *start,
                        const unsigned char *end, size_t *tlen, uint32_t *lifetime)
{
    struct tls_tickets *t = p;
    mbedtls_gcm_context *gcm = &t->gcm[TICKET_CUR];
    unsigned char *iv = start + TICKET_NAME_LEN, *len = iv + IV_LEN, *state = start + HEAD_LEN;
    *tlen = 0;
    if (end - start < HEAD_LEN + TAG_LEN) return MBEDTLS_ERR_SSL_BUFFER_TOO_SMALL;
    memcpy(start, t->view.keys[TICKET_CUR].name, TICKET_NAME_LEN);
    int rc = t->rng(t->rng_ctx, iv, IV_LEN);
    if (rc) return rc;
    size_t n;
    rc = mbedtls_ssl_session_save(session, state, (size_t)(end - state) - TAG_LEN, &n);
    if (rc) return rc;
    if (n > 0xffff) return MBEDTLS_ERR_SSL_INTERNAL_ERROR;
    len[0] = (unsigned char)(n >> 8);
    len[1] = (unsigned char)n;
    rc = mbedtls_gcm_crypt_and_tag(gcm, MBEDTLS_GCM_ENCRYPT, n, iv, IV_LEN, start, HEAD_LEN, state,
                                   state, TAG_LEN, state + n);
    if (rc) return rc;
    *tlen = HEAD_LEN + n + TAG_LEN;
    *lifetime = ticket_lifetime(&t->view, wall_ms());
    return 0;
}

static int ticket_parse(void *p, mbedtls_ssl_session *session, unsigned char *buf, size_t len)
{
    struct tls_tickets *t = p;
    if (len < HEAD_LEN + TAG_LEN) return MBEDTLS_ERR_SSL_BAD_INPUT_DATA;
    size_t n = (size_t)buf[TICKET_NAME_LEN + IV_LEN] << 8 | buf[TICKET_NAME_LEN + IV_LEN + 1];
    if (len != HEAD_LEN + n + TAG_LEN) return MBEDTLS_ERR_SSL_BAD_INPUT_DATA;
    /* A name we do not hold: a key rotated out, or another server's. */
    int slot = ticket_slot_select(&t->view, buf);
    if (slot < 0) return MBEDTLS_ERR_SSL_SESSION_TICKET_EXPIRED;
    unsigned char *state = buf + HEAD_LEN;
    int rc = mbedtls_gcm_auth_decrypt(&t->gcm[slot], n, buf + TICKET_NAME_LEN, IV_LEN, buf,
                                      HEAD_LEN, state + n, TAG_LEN, state, state);
    if (rc) return rc == MBEDTLS_ERR_GCM_AUTH_FAILED ? MBEDTLS_ERR_SSL_INVALID_MAC : rc;
    rc = mbedtls_ssl_session_load(session, state, n);
    mbedtls_platform_zeroize(state, n);
    return rc;
}

void tls_tickets_conf(struct tls_tickets *t, mbedtls_ssl_config *conf)
{
    mbedtls_ssl_conf_session_tickets_cb(conf, ticket_write, ticket_parse, t);
}
