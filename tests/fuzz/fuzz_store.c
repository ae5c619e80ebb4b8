/* SPDX-License-Identifier: MIT */
/*
 * fuzz_store: the state-file decoder store_from_json() (both schema
 * layouts), then store_to_json(), state_copy() and store_prune() on what
 * it accepted.
 *
 * Properties: no crash, leak or UB; 0, or -EBADMSG/-EINVAL with a
 * one-line message; what was accepted is written out and read back to the
 * same text (a saved state is never "corrupt" at the next start); a copy
 * writes the same text; pruning keeps a loadable state.
 *
 * CHECK_ERROR_CTL (fixed; regression inputs corpus/store/regress-store-*):
 * the error quotes raw input bytes: jansson's "near '...'" text (control
 * characters), and a legacy-layout order id before it is validated (CR,
 * LF).  Set it to 1 once errors are one clean line.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "model.h"
#include "store.h"

#ifndef CHECK_ERROR_CTL
#define CHECK_ERROR_CTL 1
#endif

static char *encode(const struct state *s) {
        char *text = NULL;
        int r = store_to_json(s, &text);
        FUZZ_CHECK(r == 0 && text, "store_to_json failed: %d", r);
        return text;
}

static void reload_same(const char *text, const char *what) {
        struct state *s = NULL;
        char *err = NULL;
        int r = store_from_json(text, strlen(text), &s, &err);
        FUZZ_CHECK(r == 0 && s, "%s does not load again (%d: %s):\n%s", what, r,
                   err ? err : "-", text);
        char *again = encode(s);
        FUZZ_CHECK(strcmp(again, text) == 0, "%s changes on reload:\n%s\n---\n%s", what, text,
                   again);
        free(again);
        free(err);
        state_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
        struct state *s = NULL;
        char *err = NULL;
        int r = store_from_json((const char *) data, size, &s, &err);

        if (r < 0) {
                FUZZ_CHECK(r != -ENOMEM, "out of memory");
                FUZZ_CHECK(!s, "failure with a state");
                FUZZ_CHECK(err, "failure %d without a message", r);
                if (CHECK_ERROR_CTL)
                        FUZZ_CHECK(fuzz_find_ctl(err, false) < 0, "control character in error '%s'",
                                   err);
                FUZZ_CHECK(strlen(err) <= 1024, "error of %zu bytes", strlen(err));
                free(err);
                return 0;
        }
        FUZZ_CHECK(s, "success without a state");
        FUZZ_CHECK(s->version == STATE_VERSION, "version %d", s->version);

        char *text = encode(s);
        reload_same(text, "the saved state");

        struct state *c = state_new();
        FUZZ_CHECK(c, "state_new");
        if (state_copy(c, s) == 0) {
                char *ctext = encode(c);
                FUZZ_CHECK(strcmp(ctext, text) == 0, "a copy writes differently");
                free(ctext);
        }
        state_free(c);

        /* Prune at a time taken from the input: what is left still loads. */
        int64_t cutoff = 0;
        for (size_t i = 0; i < size && i < 8; i++)
                cutoff = cutoff << 8 | data[i];
        store_prune(s, cutoff);
        char *pruned = encode(s);
        reload_same(pruned, "the pruned state");
        free(pruned);

        free(text);
        free(err);
        state_free(s);
        return 0;
}
