/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cmocka.h>

#include <jansson.h>

#include "store.h"
#include "util.h"

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f) {
        return remove(p);
}

static char *mktemp_dir(void) {
        char *d = strdup("/tmp/test_store.XXXXXX");
        assert_non_null(d);
        assert_non_null(mkdtemp(d));
        return d;
}

static void rm_rf(char *d) {
        nftw(d, rm_one, 16, FTW_DEPTH | FTW_PHYS);
        free(d);
}

static char *path_in(const char *dir, const char *name) {
        char *p = NULL;
        assert_true(asprintf(&p, "%s/%s", dir, name) > 0);
        return p;
}

static void write_file(const char *dir, const char *name, const void *data, size_t len) {
        char *p = path_in(dir, name);
        int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, data, len), (ssize_t) len);
        close(fd);
        free(p);
}

/* Name of the single file in dir starting with prefix (NULL if none). */
static char *find_prefixed(const char *dir, const char *prefix, size_t *ret_count) {
        DIR *d = opendir(dir);
        struct dirent *e;
        char *found = NULL;
        size_t n = 0;
        assert_non_null(d);
        while ((e = readdir(d)))
                if (strncmp(e->d_name, prefix, strlen(prefix)) == 0) {
                        n++;
                        free(found);
                        found = strdup(e->d_name);
                }
        closedir(d);
        if (ret_count)
                *ret_count = n;
        return found;
}

static struct state *sample_state(void) {
        struct state *s = state_new();
        assert_non_null(s);
        struct tracked_customer *c = state_add_customer(s, "domain:contoso.onmicrosoft.com");
        assert_non_null(c);
        c->domain = strdup("contoso.onmicrosoft.com");
        c->name = strdup("Contoso \"Ltd\" ☃");
        c->relationship_url = strdup("https://admin.microsoft.com/Adminportal/Home?invType=ResellerRelationship&partnerId=x");
        c->first_seen = 1785576002;
        c->notified_at = 1785576002;
        c->last_mail_at = 1785748802;
        c->reminders = 2;
        c->final_warning_sent = true;
        c->warned_deadline = 1786872002;
        c->next_check = 1785576062;
        c->check_count = 3;
        struct tracked_order *o = customer_add_order(c, "ORD-1111-1111-1111");
        o->status = TRACK_BLOCKED;
        o->querying_at_raw = strdup("2026-08-01T09:20:02.517Z");
        o->querying_since = 1785576002;
        o->first_seen = 1785576002;
        o->template_id = strdup("TPL-1");
        o->notified = true;
        o = customer_add_order(c, "ORD-2222-2222-2222");
        o->status = TRACK_CLOSED;
        o->outcome = strdup("processed");
        o->process_sent_at = 1785576100;
        o->process_attempts = 1;
        o->closed_at = 1785576200;
        c = state_add_customer(s, "aaaaaaaa-2222-3333-4444-555555555555");
        c->tenant_id = strdup("AAAAAAAA-2222-3333-4444-555555555555");
        c->accepted_at = 1785576300;
        c->confirmation_sent = true;
        c->deadline_passed_logged = true;
        o = customer_add_order(c, "ORD-3333-3333-3333");
        o->status = TRACK_PROCESS_SENT;
        o = customer_add_order(c, "ORD-4444-4444-4444");
        o->status = TRACK_DRAFT;
        return s;
}

static void test_round_trip(void **unused) {
        struct state *s = sample_state(), *back = NULL;
        char *j1 = NULL, *j2 = NULL, *err = NULL;

        assert_int_equal(store_to_json(s, &j1), 0);
        assert_int_equal(store_from_json(j1, strlen(j1), &back, &err), 0);
        assert_null(err);
        assert_int_equal(store_to_json(back, &j2), 0);
        assert_string_equal(j1, j2);   /* deterministic and lossless */

        assert_int_equal(back->n_customers, 2);
        assert_string_equal(back->customers[0].key, "domain:contoso.onmicrosoft.com");
        assert_string_equal(back->customers[1].key, "aaaaaaaa-2222-3333-4444-555555555555");
        const struct tracked_customer *c = &back->customers[0];
        assert_string_equal(c->name, "Contoso \"Ltd\" ☃");
        assert_int_equal(c->reminders, 2);
        assert_int_equal(c->next_check, 1785576062);
        assert_true(c->final_warning_sent);
        assert_int_equal(c->warned_deadline, 1786872002);
        assert_int_equal(c->accepted_at, 0);
        assert_int_equal(c->n_orders, 2);
        assert_string_equal(c->orders[0].querying_at_raw, "2026-08-01T09:20:02.517Z");
        assert_true(c->orders[0].notified);
        assert_int_equal(c->orders[1].status, TRACK_CLOSED);
        assert_string_equal(c->orders[1].outcome, "processed");
        assert_int_equal(c->orders[1].closed_at, 1785576200);
        assert_int_equal(c->orders[1].process_attempts, 1);
        assert_true(back->customers[1].confirmation_sent);
        assert_true(back->customers[1].deadline_passed_logged);
        assert_int_equal(back->customers[1].orders[0].status, TRACK_PROCESS_SENT);
        assert_int_equal(back->customers[1].orders[1].status, TRACK_DRAFT);

        /* Times as ISO strings, null for never; keys sorted. */
        assert_non_null(strstr(j1, "\"first_seen\": \"2026-08-01T09:20:02Z\""));
        assert_non_null(strstr(j1, "\"accepted_at\": null"));
        assert_true(strstr(j1, "\"accepted_at\"") < strstr(j1, "\"check_count\""));
        assert_non_null(strstr(j1, "\"version\": 1"));

        /* Unknown fields are ignored; missing optional ones default. */
        const char *extra = "{\"version\":1,\"future\":{\"x\":[1,2]},\"customers\":[{\"key\":\"k\","
                            "\"colour\":\"blue\",\"orders\":[{\"id\":\"ORD-1\",\"status\":\"blocked\","
                            "\"shoe_size\":44}]}]}";
        state_free(back);
        assert_int_equal(store_from_json(extra, strlen(extra), &back, &err), 0);
        assert_int_equal(back->n_customers, 1);
        assert_int_equal(back->customers[0].orders[0].status, TRACK_BLOCKED);
        assert_int_equal(back->customers[0].first_seen, 0);

        state_free(back);
        state_free(s);
        free(j1);
        free(j2);
}

static void test_from_json_rejects(void **unused) {
        static const char *const bad[] = {
                "",
                "[]",
                "{\"version\":1,\"customers\":{}}",
                "{\"version\":\"1\",\"customers\":[]}",
                "{\"version\":2,\"customers\":[]}",
                "{\"version\":-1}",
                "{\"version\":1,\"customers\":[5]}",
                "{\"version\":1,\"customers\":[{\"key\":7}]}",
                "{\"version\":1,\"customers\":[{\"key\":\"\"}]}",
                "{\"version\":1,\"customers\":[{\"key\":\"a\\nb\"}]}",
                "{\"version\":1,\"customers\":[{\"key\":\"k\",\"reminders\":\"2\"}]}",
                "{\"version\":1,\"customers\":[{\"key\":\"k\",\"reminders\":-1}]}",
                "{\"version\":1,\"customers\":[{\"key\":\"k\",\"first_seen\":\"yesterday\"}]}",
                "{\"version\":1,\"customers\":[{\"key\":\"k\",\"first_seen\":12}]}",
                "{\"version\":1,\"customers\":[{\"key\":\"k\",\"final_warning_sent\":1}]}",
                "{\"version\":1,\"customers\":[{\"key\":\"k\",\"orders\":{}}]}",
                "{\"version\":1,\"customers\":[{\"key\":\"k\",\"orders\":[{\"id\":\"O\",\"status\":\"weird\"}]}]}",
                "{\"version\":1,\"customers\":[{\"key\":\"k\",\"orders\":[{\"status\":\"blocked\"}]}]}",
                "{\"version\":1,\"customers\":[{\"key\":\"k\",\"orders\":[{\"id\":\"O\",\"status\":\"closed\",\"outcome\":[]}]}]}",
                "{\"version\":1,\"customers\":[{\"key\":\"k\"},{\"key\":\"k\"}]}",
                ("{\"version\":1,\"customers\":[{\"key\":\"k\",\"orders\":[{\"id\":\"O\",\"status\":\"draft\"}]},"
                 "{\"key\":\"j\",\"orders\":[{\"id\":\"O\",\"status\":\"draft\"}]}]}"),
                "{\"version\":1,\"version\":1}",
                "{\"orders\":[]}",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                struct state *s = NULL;
                char *err = NULL;
                int r = store_from_json(bad[i], strlen(bad[i]), &s, &err);
                if (r != -EBADMSG)
                        fail_msg("accepted bad input %zu: %s", i, bad[i]);
                assert_null(s);
                assert_non_null(err);
                assert_true(strlen(err) > 5);
                free(err);
        }
}

/* Every truncation and many byte flips of a valid document: never a
 * crash, always 0 or -EBADMSG (and a message). */
static void test_from_json_mutations(void **unused) {
        struct state *s = sample_state();
        char *good;
        assert_int_equal(store_to_json(s, &good), 0);
        state_free(s);
        size_t len = strlen(good), accepted = 0;
        char *buf = malloc(len + 1);
        static const char flips[] = { '"', ']', '0', '\\', '\0' };
        for (size_t i = 0; i <= len; i++) {
                for (size_t f = 0; f <= sizeof(flips); f++) {
                        struct state *out = NULL;
                        char *err = NULL;
                        size_t l = len;
                        memcpy(buf, good, len + 1);
                        if (f == sizeof(flips))
                                l = i;   /* truncation */
                        else if (i < len)
                                buf[i] = flips[f];
                        else
                                continue;
                        int r = store_from_json(buf, l, &out, &err);
                        assert_true(r == 0 || r == -EBADMSG);
                        if (r == 0) {
                                assert_non_null(out);
                                accepted++;
                        } else
                                assert_non_null(err);
                        state_free(out);
                        free(err);
                }
        }
        assert_true(accepted > 0);   /* e.g. a digit changed inside a value */
        free(buf);
        free(good);
}

static void test_legacy_migration(void **unused) {
        const char *v0 =
                "{\"orders\":{"
                "\"ORD-1111-1111-1111\":{\"customer\":\"domain:contoso.com\",\"status\":\"blocked\","
                "\"querying_since\":\"2026-08-01T09:20:02Z\",\"first_seen\":\"2026-08-01T09:25:00Z\","
                "\"notified_at\":\"2026-08-01T09:25:00Z\",\"reminders\":1},"
                "\"ORD-2222-2222-2222\":{\"customer\":\"tenant-b\",\"status\":\"closed\","
                "\"first_seen\":\"2026-07-01T00:00:00Z\",\"process_sent_at\":\"2026-07-02T00:00:00Z\","
                "\"accepted_at\":\"2026-07-01T23:00:00Z\",\"outcome\":\"processed\"},"
                "\"ORD-3333-3333-3333\":{\"customer\":\"domain:contoso.com\",\"status\":\"blocked\","
                "\"querying_since\":\"2026-08-02T00:00:00Z\",\"first_seen\":\"2026-08-02T00:05:00Z\","
                "\"notified_at\":\"2026-08-03T00:00:00Z\",\"reminders\":2}}}";
        struct state *s = NULL;
        char *err = NULL;
        int64_t t;

        assert_int_equal(store_from_json(v0, strlen(v0), &s, &err), 0);
        assert_int_equal(s->version, STATE_VERSION);
        assert_int_equal(s->n_customers, 2);
        const struct tracked_customer *c = state_find_customer(s, "domain:contoso.com");
        assert_non_null(c);
        assert_int_equal(c->n_orders, 2);
        util_parse_time("2026-08-01T09:25:00Z", &t);
        assert_int_equal(c->first_seen, t);
        assert_int_equal(c->notified_at, t);
        util_parse_time("2026-08-03T00:00:00Z", &t);
        assert_int_equal(c->last_mail_at, t);
        assert_int_equal(c->reminders, 2);
        assert_true(c->orders[0].notified);
        c = state_find_customer(s, "tenant-b");
        assert_non_null(c);
        util_parse_time("2026-07-01T23:00:00Z", &t);
        assert_int_equal(c->accepted_at, t);
        assert_int_equal(c->orders[0].status, TRACK_CLOSED);
        util_parse_time("2026-07-02T00:00:00Z", &t);
        assert_int_equal(c->orders[0].closed_at, t);
        state_free(s);

        /* Explicit version 0 too, and a bad legacy file is refused. */
        const char *v0b = "{\"version\":0,\"orders\":{\"ORD-1\":{\"customer\":\"k\",\"status\":\"draft\"}}}";
        assert_int_equal(store_from_json(v0b, strlen(v0b), &s, &err), 0);
        assert_int_equal(s->customers[0].orders[0].status, TRACK_DRAFT);
        state_free(s);
        const char *v0c = "{\"version\":0,\"orders\":{\"ORD-1\":{\"status\":\"draft\"}}}";
        assert_int_equal(store_from_json(v0c, strlen(v0c), &s, &err), -EBADMSG);
        free(err);
}

static void test_load_missing_and_save(void **unused) {
        char *dir = mktemp_dir();
        struct state *s = NULL, *back = NULL;
        char *warn = NULL;
        struct stat st;

        assert_int_equal(store_load(dir, &s, &warn), 0);
        assert_non_null(s);
        assert_null(warn);
        assert_int_equal(s->n_customers, 0);
        state_free(s);

        /* Loose directory permissions get tightened; file is 0600. */
        assert_int_equal(chmod(dir, 0755), 0);
        s = sample_state();
        assert_int_equal(store_save(dir, s), 0);
        assert_int_equal(stat(dir, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0700);
        char *p = path_in(dir, "state.json");
        assert_int_equal(stat(p, &st), 0);
        assert_int_equal(st.st_mode & 07777, 0600);
        assert_int_equal(store_load(dir, &back, &warn), 0);
        assert_null(warn);
        char *j1, *j2;
        assert_int_equal(store_to_json(s, &j1), 0);
        assert_int_equal(store_to_json(back, &j2), 0);
        assert_string_equal(j1, j2);
        free(j2);
        state_free(back);

        /* A missing state directory is created 0700. */
        char *sub = path_in(dir, "sub");
        assert_int_equal(store_save(sub, s), 0);
        assert_int_equal(stat(sub, &st), 0);
        assert_true(S_ISDIR(st.st_mode));
        assert_int_equal(st.st_mode & 07777, 0700);

        /* Failures leave the old file intact and no temp file behind. */
        char *parentless = path_in(dir, "no/such/dir");
        assert_int_equal(store_save(parentless, s), -ENOENT);
        char *notdir = path_in(dir, "state.json");   /* a file used as a directory */
        assert_int_equal(store_save(notdir, s), -ENOTDIR);
        char *nested = path_in(dir, "state.json/x");
        assert_int_equal(store_save(nested, s), -ENOTDIR);
        /* The temp name is taken by a directory: the write fails. */
        char *tmpname = NULL;
        assert_true(asprintf(&tmpname, "%s/state.json.tmp.%ld", dir, (long) getpid()) > 0);
        assert_int_equal(mkdir(tmpname, 0700), 0);
        struct state *other = state_new();
        assert_true(store_save(dir, other) < 0);
        rmdir(tmpname);
        char *text = NULL;
        size_t len;
        assert_int_equal(util_read_file(p, 1 << 20, &text, &len), 0);
        assert_string_equal(text, j1);
        size_t n;
        free(find_prefixed(dir, "state.json.tmp", &n));
        assert_int_equal(n, 0);

        free(text);
        free(tmpname);
        free(nested);
        free(notdir);
        free(parentless);
        free(sub);
        free(j1);
        free(p);
        state_free(other);
        state_free(s);
        rm_rf(dir);
}

static void check_moved_aside(const char *content, size_t len, const char *why) {
        char *dir = mktemp_dir();
        struct state *s = NULL;
        char *warn = NULL;
        size_t n;

        write_file(dir, "state.json", content, len);
        assert_int_equal(store_load(dir, &s, &warn), 0);
        assert_non_null(s);
        assert_int_equal(s->n_customers, 0);
        assert_non_null(warn);
        if (!strstr(warn, why))
                fail_msg("warning \"%s\" does not mention \"%s\"", warn, why);
        assert_non_null(strstr(warn, "state.json"));
        assert_non_null(strstr(warn, "corrupt-"));
        char *moved = find_prefixed(dir, "state.json.corrupt-", &n);
        assert_int_equal(n, 1);
        assert_non_null(strstr(warn, moved));
        /* YYYYmmddTHHMMSSZ */
        assert_int_equal(strlen(moved), strlen("state.json.corrupt-") + 16);
        assert_int_equal(moved[strlen(moved) - 1], 'Z');
        char *p = path_in(dir, "state.json"), *mp = path_in(dir, moved), *text = NULL;
        struct stat st;
        assert_int_equal(stat(p, &st), -1);   /* gone */
        size_t tl;
        assert_int_equal(util_read_file(mp, 128u << 20, &text, &tl), 0);
        assert_int_equal(tl, len);
        assert_memory_equal(text, content, len);

        /* The daemon saves a fresh state; a second corrupt file does not
         * clobber the first one. */
        assert_int_equal(store_save(dir, s), 0);
        write_file(dir, "state.json", content, len);
        state_free(s);
        free(warn);
        assert_int_equal(store_load(dir, &s, &warn), 0);
        free(find_prefixed(dir, "state.json.corrupt-", &n));
        assert_int_equal(n, 2);

        free(text);
        free(p);
        free(mp);
        free(moved);
        free(warn);
        state_free(s);
        rm_rf(dir);
}

static void test_corrupt_files_moved_aside(void **unused) {
        struct state *s = sample_state();
        char *good;
        assert_int_equal(store_to_json(s, &good), 0);
        state_free(s);

        check_moved_aside("garbage\x01\xff", 9, "invalid JSON");
        check_moved_aside(good, strlen(good) / 2, "invalid JSON");   /* truncated */
        check_moved_aside("", 0, "invalid JSON");
#define S(x) x, strlen(x)
        check_moved_aside(S("{\"version\":1,\"customers\":[{\"key\":\"k\",\"reminders\":\"x\"}]}"),
                          "not a small non-negative integer");
        check_moved_aside(S("{\"version\":1,\"customers\":[],\"customers\":[]}"), "duplicate");
        /* The same faults in the layout store_save() writes, which loads
         * customer by customer: the same verdicts. */
        check_moved_aside(S("{\n \"customers\": [\n  {\n   \"key\": \"k\",\n   \"reminders\": \"x\"\n  }\n ],\n"
                            " \"version\": 1\n}\n"), "not a small non-negative integer");
        check_moved_aside(S("{\n \"customers\": [\n  {\"key\": \"k\", \"key\": \"k\"}\n ],\n \"version\": 1\n}\n"),
                          "duplicate");
        check_moved_aside(S("{\n \"customers\": [],\n \"version\": 1\n}\n}"), "invalid JSON");
        check_moved_aside(S("{\n \"customers\": [\n  {\"key\": \"k\"} {\"key\": \"l\"}\n ],\n \"version\": 1\n}\n"),
                          "invalid JSON");
#undef S
        check_moved_aside("{\"version\":1}\0junk", 18, "NUL");
        free(good);

        /* Larger than the cap (sparse file: cheap). */
        char *dir = mktemp_dir(), *p = path_in(dir, "state.json"), *warn = NULL;
        int fd = open(p, O_WRONLY | O_CREAT, 0600);
        assert_true(fd >= 0);
        assert_int_equal(ftruncate(fd, (off_t) (65 << 20)), 0);
        close(fd);
        assert_int_equal(store_load(dir, &s, &warn), 0);
        assert_non_null(strstr(warn, "larger than 64 MiB"));
        state_free(s);
        free(warn);
        free(p);
        rm_rf(dir);

        /* A state "file" that is a directory cannot be read or moved
         * usefully: an error, not an empty state. */
        dir = mktemp_dir();
        p = path_in(dir, "state.json");
        assert_int_equal(mkdir(p, 0700), 0);
        s = NULL;
        assert_true(store_load(dir, &s, &warn) < 0);
        assert_null(s);
        free(warn);
        free(p);
        rm_rf(dir);
}

/* Issue 12.13: store_save refuses to write a state store_load would refuse
 * to read (64 MiB): -EFBIG, the old file intact, no temp file left. */
static void test_save_refuses_oversize(void **unused) {
        char *dir = mktemp_dir();
        struct state *s = sample_state(), *big = state_new();
        char *warn = NULL, *before = NULL, *after = NULL;
        const size_t name_len = (size_t) 4 << 20;
        assert_int_equal(store_save(dir, s), 0);
        char *p = path_in(dir, "state.json");
        assert_int_equal(util_read_file(p, 1 << 20, &before, NULL), 0);

        assert_non_null(big);
        for (int i = 0; i < 17; i++) {     /* 17 x 4 MiB: past 64 MiB */
                char key[32];
                snprintf(key, sizeof(key), "domain:big%d.example", i);
                struct tracked_customer *c = state_add_customer(big, key);
                assert_non_null(c);
                c->name = malloc(name_len + 1);
                assert_non_null(c->name);
                memset(c->name, 'n', name_len);
                c->name[name_len] = '\0';
        }
        assert_int_equal(store_save(dir, big), -EFBIG);
        assert_int_equal(util_read_file(p, 1 << 20, &after, NULL), 0);
        assert_string_equal(before, after);
        DIR *d = opendir(dir);
        struct dirent *de;
        assert_non_null(d);
        while ((de = readdir(d)))
                assert_null(strstr(de->d_name, ".tmp."));
        closedir(d);
        struct state *back = NULL;
        assert_int_equal(store_load(dir, &back, &warn), 0);
        assert_null(warn);
        state_free(back);
        state_free(big);
        state_free(s);
        free(before);
        free(after);
        free(p);
        rm_rf(dir);
}

/* Issue 12.6: a file of a newer schema version is refused, never moved
 * aside (the newer partnerd that wrote it still needs it). */
static void test_newer_version_refused(void **unused) {
        static const char *const files[] = {
                "{\"version\":7,\"customers\":[]}",
                "{\n \"customers\": [],\n \"version\": 7\n}\n",
        };
        for (size_t i = 0; i < 2; i++) {
                char *dir = mktemp_dir(), *warn = NULL, *text = NULL;
                struct state *s = NULL;
                size_t n;
                write_file(dir, "state.json", files[i], strlen(files[i]));
                assert_int_equal(store_load(dir, &s, &warn), -EPROTONOSUPPORT);
                assert_null(s);
                assert_non_null(warn);
                assert_non_null(strstr(warn, "newer partnerd"));
                assert_non_null(strstr(warn, "unsupported version 7"));
                free(warn);
                assert_int_equal(store_read(dir, &s, &warn), -EPROTONOSUPPORT);
                assert_non_null(strstr(warn, "newer partnerd"));
                free(warn);
                free(find_prefixed(dir, "state.json.corrupt-", &n));
                assert_int_equal(n, 0);
                char *p = path_in(dir, "state.json");
                assert_int_equal(util_read_file(p, 1u << 20, &text, NULL), 0);
                assert_string_equal(text, files[i]);
                free(text);
                free(p);
                rm_rf(dir);
        }
}

/* store_read() (status, --dry-run) changes nothing: a corrupt file stays
 * where it is, temp files of a killed save stay too. */
static void test_read_changes_nothing(void **unused) {
        char *dir = mktemp_dir(), *err = NULL;
        struct state *s = NULL;
        size_t n;

        assert_int_equal(store_read(dir, &s, &err), 0);   /* missing: empty */
        assert_int_equal(s->n_customers, 0);
        state_free(s);
        s = NULL;
        write_file(dir, "state.json", "garbage", 7);
        write_file(dir, "state.json.tmp.999999999", "x", 1);   /* no such PID */
        assert_int_equal(store_read(dir, &s, &err), -EBADMSG);
        assert_null(s);
        assert_non_null(strstr(err, "unusable"));
        assert_non_null(strstr(err, "invalid JSON"));
        free(err);
        free(find_prefixed(dir, "state.json.corrupt-", &n));
        assert_int_equal(n, 0);
        free(find_prefixed(dir, "state.json.tmp.", &n));
        assert_int_equal(n, 1);
        free(find_prefixed(dir, "state.json", &n));
        assert_int_equal(n, 2);

        /* a good file reads as store_load() reads it */
        struct state *good = sample_state();
        assert_int_equal(store_save(dir, good), 0);
        assert_int_equal(store_read(dir, &s, &err), 0);
        assert_int_equal(s->n_customers, good->n_customers);
        state_free(s);
        state_free(good);
        rm_rf(dir);
}

/* The state directory lock: a second holder is refused with the PID of
 * the first, which is released on unlock. */
static void test_lock(void **unused) {
        char *dir = mktemp_dir(), *sub = path_in(dir, "new");
        pid_t holder = -1;
        int fd = store_lock(sub, &holder);   /* creates the directory */
        assert_true(fd >= 0);
        struct stat st;
        assert_int_equal(stat(sub, &st), 0);
        assert_int_equal(st.st_mode & 0777, 0700);
        /* another open file description: refused like another process */
        assert_int_equal(store_lock(sub, &holder), -EWOULDBLOCK);
        assert_int_equal(holder, getpid());
        store_unlock(fd);
        int fd2 = store_lock(sub, &holder);
        assert_true(fd2 >= 0);
        store_unlock(fd2);
        store_unlock(-1);
        free(sub);
        rm_rf(dir);
}

static void test_prune(void **unused) {
        struct state *s = sample_state();
        /* Customer 0: ORD-2222 closed at 1785576200; customer 1: nothing closed. */
        store_prune(s, 1785576200);   /* not before the cutoff: kept */
        assert_int_equal(s->customers[0].n_orders, 2);
        store_prune(s, 1785576201);
        assert_int_equal(s->customers[0].n_orders, 1);
        assert_string_equal(s->customers[0].orders[0].id, "ORD-1111-1111-1111");
        assert_int_equal(s->n_customers, 2);

        /* Close everything of customer 0: the customer goes too. */
        s->customers[0].orders[0].status = TRACK_CLOSED;
        s->customers[0].orders[0].closed_at = 100;
        store_prune(s, 200);
        assert_int_equal(s->n_customers, 1);
        assert_string_equal(s->customers[0].key, "aaaaaaaa-2222-3333-4444-555555555555");
        assert_int_equal(s->customers[0].n_orders, 2);   /* open orders are never pruned */
        state_free(s);
}

/* Customers tracked per Partner Center account: the account and the ops
 * notice survive a save; a file written before accounts (no "account")
 * loads with none, for the engine to settle. */
static void test_accounts(void **unused) {
        struct state *s = state_new(), *back = NULL;
        char *text = NULL, *err = NULL;
        struct tracked_customer *c = state_add_customer(s, "brazil/6f1c2a7e-0b8d-4c55-9e41-2d7f0a3b9c10");
        assert_non_null(c);
        c->account = strdup("brazil");
        struct tracked_order *t = customer_add_order(c, "ORD-1111-1111-1111");
        t->unlisted_partner = strdup("e0d1c2b3-a4f5-4e6d-8c7b-9a0f1e2d3c4b");
        assert_int_equal(store_to_json(s, &text), 0);
        assert_int_equal(store_from_json(text, strlen(text), &back, &err), 0);
        assert_string_equal(back->customers[0].account, "brazil");
        assert_string_equal(back->customers[0].orders[0].unlisted_partner, "e0d1c2b3-a4f5-4e6d-8c7b-9a0f1e2d3c4b");
        state_free(back);
        free(text);
        state_free(s);

        static const char old[] = "{\"customers\": [{\"key\": \"6f1c2a7e-0b8d-4c55-9e41-2d7f0a3b9c10\", "
                                  "\"notified_at\": \"2026-12-04T19:39:57Z\", \"orders\": [{\"id\": "
                                  "\"ORD-1111-1111-1111\", \"status\": \"blocked\", \"notified\": true}]}], "
                                  "\"version\": 1}";
        assert_int_equal(store_from_json(old, strlen(old), &back, &err), 0);
        assert_null(back->customers[0].account);
        assert_string_equal(back->customers[0].key, "6f1c2a7e-0b8d-4c55-9e41-2d7f0a3b9c10");
        assert_true(back->customers[0].notified_at > 0);
        assert_null(back->customers[0].orders[0].unlisted_partner);
        state_free(back);
        /* wrong type */
        static const char bad[] = "{\"customers\": [{\"key\": \"k\", \"account\": 3}], \"version\": 1}";
        assert_int_equal(store_from_json(bad, strlen(bad), &back, &err), -EBADMSG);
        free(err);
}

/* The counters (issue 14): saved with the state, loaded back exactly;
 * a file without them loads as zeros; the layout store_save() writes is
 * what json_dumps(JSON_SORT_KEYS | JSON_INDENT(1)) gives (the fast
 * loader's assumption) and loads the same through both loaders; wrong
 * types make the file corrupt; unknown counter names are ignored. */
static void test_counters(void **unused) {
        char *dir = mktemp_dir(), *warn = NULL, *text = NULL, *err = NULL;
        struct state *s = sample_state(), *back = NULL, *parsed = NULL;
        assert_int_equal(counters_add(&s->counters, COUNTER_MAILS_SENT, "new-request", NULL, 2), 0);
        assert_int_equal(counters_add(&s->counters, COUNTER_MAILS_SENT, "gdap-request", NULL, 1), 0);
        assert_int_equal(counters_add(&s->counters, COUNTER_MAIL_FAILURES, NULL, NULL, 3), 0);
        assert_int_equal(counters_add(&s->counters, COUNTER_PROCESS, "moved", NULL, 1), 0);
        assert_int_equal(counters_add(&s->counters, COUNTER_HTTP_REQUESTS, "marketplace", "2xx", 40), 0);
        assert_int_equal(counters_add(&s->counters, COUNTER_HTTP_REQUESTS, "marketplace", "error", 1), 0);
        assert_int_equal(counters_add(&s->counters, COUNTER_HTTP_REQUESTS, "token", "2xx", 2), 0);
        assert_int_equal(counters_add(&s->counters, COUNTER_HTTP_REQUESTS, "bad label", "2xx", 1), -EINVAL);
        assert_int_equal(store_save(dir, s), 0);

        char *p = path_in(dir, "state.json");
        assert_int_equal(util_read_file(p, 1u << 20, &text, NULL), 0);
        json_t *root = json_loads(text, 0, NULL);
        assert_non_null(root);
        char *dumped = json_dumps(root, JSON_SORT_KEYS | JSON_INDENT(1));
        assert_non_null(dumped);
        size_t n = strlen(dumped);
        assert_int_equal(strlen(text), n + 1);
        assert_memory_equal(text, dumped, n);
        assert_non_null(strstr(text, "\"http_requests\": {\n   \"marketplace\": {\n    \"2xx\": 40,"));
        free(dumped);
        json_decref(root);

        assert_int_equal(store_load(dir, &back, &warn), 0);     /* the fast loader */
        assert_null(warn);
        assert_int_equal(store_from_json(text, strlen(text), &parsed, &err), 0);   /* the tree one */
        for (int i = 0; i < 2; i++) {
                const struct counters *c = i ? &parsed->counters : &back->counters;
                assert_int_equal(c->n, 7);
                assert_int_equal(counters_get(c, COUNTER_MAILS_SENT, "new-request", NULL), 2);
                assert_int_equal(counters_get(c, COUNTER_MAILS_SENT, "gdap-request", NULL), 1);
                assert_int_equal(counters_get(c, COUNTER_MAIL_FAILURES, NULL, NULL), 3);
                assert_int_equal(counters_get(c, COUNTER_PROCESS, "moved", NULL), 1);
                assert_int_equal(counters_get(c, COUNTER_PROCESS, "done", NULL), 0);
                assert_int_equal(counters_get(c, COUNTER_HTTP_REQUESTS, "marketplace", "2xx"), 40);
                assert_int_equal(counters_get(c, COUNTER_HTTP_REQUESTS, "marketplace", "error"), 1);
                assert_int_equal(counters_get(c, COUNTER_HTTP_REQUESTS, "token", "2xx"), 2);
        }
        assert_int_equal(back->n_customers, 2);
        /* a copy (the dry run's) carries them */
        struct state copy;
        assert_int_equal(state_copy(&copy, back), 0);
        assert_int_equal(counters_get(&copy.counters, COUNTER_HTTP_REQUESTS, "token", "2xx"), 2);
        state_clear(&copy);
        state_free(back);
        state_free(parsed);
        free(text);

        /* without "counters": zeros; unknown names ignored */
        static const char old[] = "{\"counters\": {\"future_thing\": {\"x\": [1]}, \"mail_failures\": 4},"
                                  " \"customers\": [], \"version\": 1}";
        static const char none[] = "{\"customers\": [], \"version\": 1}";
        assert_int_equal(store_from_json(none, strlen(none), &back, &err), 0);
        assert_int_equal(back->counters.n, 0);
        state_free(back);
        assert_int_equal(store_from_json(old, strlen(old), &back, &err), 0);
        assert_int_equal(back->counters.n, 1);
        assert_int_equal(counters_get(&back->counters, COUNTER_MAIL_FAILURES, NULL, NULL), 4);
        state_free(back);

        /* wrong types: corrupt, named */
        static const char *const bad[] = {
                "{\"counters\": [], \"version\": 1}",
                "{\"counters\": {\"mail_failures\": -1}, \"version\": 1}",
                "{\"counters\": {\"mail_failures\": \"3\"}, \"version\": 1}",
                "{\"counters\": {\"mails_sent\": 3}, \"version\": 1}",
                "{\"counters\": {\"mails_sent\": {\"new request\": 3}}, \"version\": 1}",
                "{\"counters\": {\"http_requests\": {\"graph\": 3}}, \"version\": 1}",
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                err = NULL;
                assert_int_equal(store_from_json(bad[i], strlen(bad[i]), &back, &err), -EBADMSG);
                assert_non_null(strstr(err, "counters"));
                free(err);
        }
        free(p);
        state_free(s);
        rm_rf(dir);
}

int main(void) {
        const struct CMUnitTest tests[] = {
                cmocka_unit_test(test_round_trip),
                cmocka_unit_test(test_from_json_rejects),
                cmocka_unit_test(test_from_json_mutations),
                cmocka_unit_test(test_legacy_migration),
                cmocka_unit_test(test_load_missing_and_save),
                cmocka_unit_test(test_corrupt_files_moved_aside),
                cmocka_unit_test(test_newer_version_refused),
                cmocka_unit_test(test_read_changes_nothing),
                cmocka_unit_test(test_lock),
                cmocka_unit_test(test_prune),
                cmocka_unit_test(test_save_refuses_oversize),
                cmocka_unit_test(test_accounts),
                cmocka_unit_test(test_counters),
        };
        return cmocka_run_group_tests(tests, NULL, NULL);
}
