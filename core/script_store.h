/* script_store: the text of the script the master last checked, and its
 * reload generation, in a MAP_SHARED region the master creates before it
 * forks. Every worker (and every restarted one) loads exactly the bytes
 * that passed the check, even if the file changed since.
 *
 * One writer, the master (at start and at each reload that passes its
 * check); readers are the workers, at start and on SIGHUP. A seqlock keeps
 * a reader from taking half of an old text and half of a new one. */
#pragma once
#include <stddef.h>
#include <stdint.h>

#define SCRIPT_STORE_MAX (8u << 20) /* bytes of script text, the NUL after it included */

/* Maps the region. 0 or -errno. */
int script_store_create(void);
void script_store_destroy(void);
/* The master stores a checked script with its generation. 0, -E2BIG when
 * it is too large (the text stored before is kept), -ENODEV before
 * script_store_create. */
int script_store_put(const char *text, size_t len, uint32_t generation);
/* A worker's copy of the text stored last (malloc'd, NUL-terminated), its
 * length and generation; NULL before script_store_create or out of
 * memory. */
char *script_store_get(size_t *len, uint32_t *generation);
