/* SPDX-License-Identifier: MIT */
/*
 * mailoutbox.c: the durable outbox of lib/mail, {state_dir}/outbox.
 *
 * Layout:
 *   outbox/<queued>-<random>.msg   one message: a one-line JSON envelope
 *                                  (dedup_key, message_id, envelope_from,
 *                                  rcpt, attempts, next_attempt, status,
 *                                  last_error...), "\n", the RFC 5322 data
 *   outbox/failed/<same name>      permanently failed, kept for the admin
 *   outbox/sent.json               keys delivered or failed recently
 *                                  (tombstones, kept MAIL_OUTBOX_RETENTION)
 *   outbox/sent.log                tombstones since sent.json was written,
 *                                  one JSON object per line (appended and
 *                                  fdatasync'd per message; folded into
 *                                  sent.json at the end of each flush)
 * Every other write is atomic (written to a temporary name and renamed),
 * files 0600, dirs 0700; puts are made durable in batches
 * (mail_outbox_sync, one syncfs()), everything else per write.  Appending keeps a flush of n messages O(n): rewriting sent.json
 * per message was O(n^2) (2,500 mails: 45% of a cycle's CPU).
 *
 * Delivery order on success: the key goes into sent.log first, then the
 * message file is removed.  A crash between the server's "250" and the
 * tombstone sends the message once more after the restart (at most one
 * duplicate per crash); a crash after the tombstone is cleaned up at open.
 */
#include "mail.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "util.h"

#define OUTBOX_MAX_FILE   (8u * 1024u * 1024u)
#define OUTBOX_MAX_SENT   (4u * 1024u * 1024u)
#define OUTBOX_MAX_KEY    512u
#define OUTBOX_ERROR_MAX  400u
#define OUTBOX_VERSION    1

/* Delay before attempt n+1 after n failed attempts; the last repeats. */
static const int64_t outbox_backoff[] = { 60, 5 * 60, 15 * 60, 60 * 60 };

struct outbox_entry {
        char *file;                  /* basename in the outbox directory */
        char *dedup_key;
        struct mail_message msg;
        int attempts;
        int64_t queued_at;
        int64_t next_attempt;
        long smtp_code;
        char *last_error;
        bool in_flight;
};

struct outbox_tomb {
        char *key;
        int64_t at;
        bool failed;
};

struct flush_state;

struct mail_outbox {
        char *dir;
        char *failed_dir;
        char *sent_path;
        char *log_path;              /* sent.log */
        bool log_dirty;              /* sent.log may hold tombstones */
        bool unsynced;               /* puts not yet made durable */
        struct outbox_entry **entries;
        size_t n_entries;
        struct outbox_tomb *tombs;
        size_t n_tombs;
        struct flush_state *flush;
        bool (*gate)(void *ud);      /* mail_outbox_set_gate */
        void *gate_ud;
        size_t max_file;             /* mail_outbox_set_max_file, 0: none */
};

struct flush_attempt {
        struct flush_state *fs;
        struct outbox_entry *e;
};

struct flush_state {
        struct mail_outbox *o;
        struct mail_transport *t;
        int64_t now;
        mail_flush_fn cb;
        void *ud;
        struct outbox_entry **queue; /* due entries, in order */
        size_t n_queue, next;
        size_t running;
        struct mail_flush_stats st;
        struct mail_flush_item *items;
        size_t n_items;
        char **strings;              /* owned strings of items */
        size_t n_strings;
};

/* ---- entries ---------------------------------------------------------- */

static void entry_free(struct outbox_entry *e) {
        if (!e)
                return;
        free(e->file);
        free(e->dedup_key);
        free(e->msg.message_id);
        free(e->msg.envelope_from);
        for (size_t i = 0; i < e->msg.n_rcpt; i++)
                free(e->msg.rcpt[i]);
        free(e->msg.rcpt);
        free(e->msg.subject);
        free(e->msg.data);
        free(e->last_error);
        free(e);
}

static json_t *entry_envelope(const struct outbox_entry *e, const char *status) {
        json_t *rcpt = json_array();
        for (size_t i = 0; rcpt && i < e->msg.n_rcpt; i++)
                json_array_append_new(rcpt, json_string(e->msg.rcpt[i]));
        return json_pack("{s:i, s:s, s:s?, s:s?, s:s, s:o, s:i, s:I, s:I, s:s, s:s?, s:I}",
                         "version", OUTBOX_VERSION,
                         "dedup_key", e->dedup_key,
                         "message_id", e->msg.message_id,
                         "subject", e->msg.subject,
                         "envelope_from", e->msg.envelope_from,
                         "rcpt", rcpt,
                         "attempts", e->attempts,
                         "queued_at", (json_int_t) e->queued_at,
                         "next_attempt", (json_int_t) e->next_attempt,
                         "status", status,
                         "last_error", e->last_error,
                         "smtp_code", (json_int_t) e->smtp_code);
}

/* Like util_write_file_atomic() without the fsync()s: for puts, which
 * mail_outbox_sync() makes durable in one go. */
static int write_file_nosync(const char *path, const char *data, size_t len) {
        char *tmp = NULL;
        int fd, r = 0;

        if (asprintf(&tmp, "%s.tmp.%ld", path, (long) getpid()) < 0)
                return -ENOMEM;
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
                r = -errno;
                goto out;
        }
        for (size_t off = 0; off < len && r == 0;) {
                ssize_t n = write(fd, data + off, len - off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0)
                        r = n < 0 ? -errno : -EIO;
                else
                        off += (size_t) n;
        }
        if (r == 0 && fchmod(fd, 0600) < 0)
                r = -errno;
        if (close(fd) < 0 && r == 0)
                r = -errno;
        if (r == 0 && rename(tmp, path) < 0)
                r = -errno;
        if (r < 0)
                (void) unlink(tmp);
out:
        free(tmp);
        return r;
}

/* max: the largest file allowed (0: any), -EFBIG beyond it. */
static int entry_write_mode(const char *dir, const struct outbox_entry *e, const char *status,
                            bool sync, size_t max) {
        json_t *env;
        char *head = NULL, *path = NULL, *buf = NULL;
        int r = -ENOMEM;

        if (!e->msg.data)
                return -EIO;            /* never replace a message by its envelope alone */
        env = entry_envelope(e, status);
        if (!env)
                return -ENOMEM;
        head = json_dumps(env, JSON_COMPACT | JSON_ENSURE_ASCII);
        json_decref(env);
        if (!head)
                goto out;
        size_t hl = strlen(head), len = hl + 1 + e->msg.len;
        if (max && len > max) {
                r = -EFBIG;
                goto out;
        }
        buf = malloc(len);
        if (!buf)
                goto out;
        memcpy(buf, head, hl);
        buf[hl] = '\n';
        memcpy(buf + hl + 1, e->msg.data, e->msg.len);
        if (asprintf(&path, "%s/%s", dir, e->file) < 0) {
                path = NULL;
                goto out;
        }
        r = sync ? util_write_file_atomic(path, buf, len, 0600) : write_file_nosync(path, buf, len);
out:
        free(head);
        free(buf);
        free(path);
        return r;
}

static int entry_write(const char *dir, const struct outbox_entry *e, const char *status) {
        return entry_write_mode(dir, e, status, true, 0);
}

int mail_outbox_sync(struct mail_outbox *o) {
        int fd, r = 0;

        if (!o)
                return -EINVAL;
        if (!o->unsynced)
                return 0;
        fd = open(o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd < 0)
                return -errno;
        /* the data and the renames of every put, and the directory */
        if (syncfs(fd) < 0 || fsync(fd) < 0)
                r = -errno;
        close(fd);
        if (r == 0)
                o->unsynced = false;
        return r;
}

static char *json_str_dup(json_t *o, const char *key) {
        const char *s = json_string_value(json_object_get(o, key));
        return s ? strdup(s) : NULL;
}

/* Parses one stored file; -EINVAL when it is not ours or damaged. */
static int entry_parse(const char *name, char *data, size_t len, struct outbox_entry **ret,
                       bool *ret_failed) {
        struct outbox_entry *e = NULL;
        json_t *env = NULL, *rcpt;
        char *nl = memchr(data, '\n', len);
        int r = -EINVAL;

        if (!nl)
                return -EINVAL;
        env = json_loadb(data, (size_t) (nl - data), 0, NULL);
        if (!json_is_object(env))
                goto out;
        e = calloc(1, sizeof(*e));
        if (!e) {
                r = -ENOMEM;
                goto out;
        }
        e->file = strdup(name);
        e->dedup_key = json_str_dup(env, "dedup_key");
        e->msg.message_id = json_str_dup(env, "message_id");
        e->msg.subject = json_str_dup(env, "subject");
        e->msg.envelope_from = json_str_dup(env, "envelope_from");
        e->last_error = json_str_dup(env, "last_error");
        e->attempts = (int) json_integer_value(json_object_get(env, "attempts"));
        e->queued_at = json_integer_value(json_object_get(env, "queued_at"));
        e->next_attempt = json_integer_value(json_object_get(env, "next_attempt"));
        e->smtp_code = (long) json_integer_value(json_object_get(env, "smtp_code"));
        const char *status = json_string_value(json_object_get(env, "status"));
        *ret_failed = status && strcmp(status, "failed") == 0;
        if (!e->file || !e->dedup_key || !mail_is_addr_spec(e->msg.envelope_from))
                goto out;
        rcpt = json_object_get(env, "rcpt");
        if (!json_is_array(rcpt) || json_array_size(rcpt) == 0 || json_array_size(rcpt) > 10000)
                goto out;
        e->msg.rcpt = calloc(json_array_size(rcpt), sizeof(char *));
        if (!e->msg.rcpt) {
                r = -ENOMEM;
                goto out;
        }
        for (size_t i = 0; i < json_array_size(rcpt); i++) {
                const char *a = json_string_value(json_array_get(rcpt, i));
                if (!mail_is_addr_spec(a))
                        goto out;
                e->msg.rcpt[e->msg.n_rcpt] = strdup(a);
                if (!e->msg.rcpt[e->msg.n_rcpt]) {
                        r = -ENOMEM;
                        goto out;
                }
                e->msg.n_rcpt++;
        }
        e->msg.len = len - (size_t) (nl + 1 - data);
        e->msg.data = malloc(e->msg.len + 1);
        if (!e->msg.data) {
                r = -ENOMEM;
                goto out;
        }
        memcpy(e->msg.data, nl + 1, e->msg.len);
        e->msg.data[e->msg.len] = '\0';
        if (e->attempts < 0)
                e->attempts = 0;
        *ret = e;
        e = NULL;
        r = 0;
out:
        json_decref(env);
        entry_free(e);
        return r;
}

/* ---- tombstones (sent.json) ------------------------------------------- */

static bool tomb_has(const struct mail_outbox *o, const char *key) {
        for (size_t i = 0; i < o->n_tombs; i++)
                if (strcmp(o->tombs[i].key, key) == 0)
                        return true;
        return false;
}

static int tomb_add(struct mail_outbox *o, const char *key, int64_t at, bool failed) {
        if (tomb_has(o, key))
                return 0;
        struct outbox_tomb *t = realloc(o->tombs, (o->n_tombs + 1) * sizeof(*t));
        if (!t)
                return -ENOMEM;
        o->tombs = t;
        t[o->n_tombs].key = strdup(key);
        if (!t[o->n_tombs].key)
                return -ENOMEM;
        t[o->n_tombs].at = at;
        t[o->n_tombs].failed = failed;
        o->n_tombs++;
        return 0;
}

/* Drops tombstones older than the retention and writes sent.json. */
static int tombs_save(struct mail_outbox *o, int64_t now) {
        json_t *arr = json_array(), *root;
        size_t j = 0;
        int r;

        if (!arr)
                return -ENOMEM;
        for (size_t i = 0; i < o->n_tombs; i++) {
                if (now > 0 && o->tombs[i].at > 0 && now - o->tombs[i].at > MAIL_OUTBOX_RETENTION) {
                        free(o->tombs[i].key);
                        continue;
                }
                o->tombs[j++] = o->tombs[i];
                json_array_append_new(arr, json_pack("{s:s, s:I, s:s}", "key", o->tombs[j - 1].key,
                                                     "at", (json_int_t) o->tombs[j - 1].at,
                                                     "status", o->tombs[j - 1].failed ? "failed" : "sent"));
        }
        o->n_tombs = j;
        root = json_pack("{s:i, s:o}", "version", OUTBOX_VERSION, "keys", arr);
        if (!root)
                return -ENOMEM;
        char *s = json_dumps(root, JSON_INDENT(1) | JSON_ENSURE_ASCII);
        json_decref(root);
        if (!s)
                return -ENOMEM;
        r = util_write_file_atomic(o->sent_path, s, strlen(s), 0600);
        free(s);
        /* sent.json now holds everything: the log may go (a crash before
         * the unlink only leaves duplicates, which loading ignores) */
        if (r >= 0 && o->log_dirty && (unlink(o->log_path) >= 0 || errno == ENOENT))
                o->log_dirty = false;
        return r;
}

/* Records a tombstone durably: one line appended to sent.log. */
static int tomb_record(struct mail_outbox *o, const char *key, int64_t at, bool failed) {
        char *line = NULL;
        int fd, r;

        if (tomb_has(o, key))
                return 0;
        r = tomb_add(o, key, at, failed);
        if (r < 0)
                return r;
        json_t *j = json_pack("{s:s, s:I, s:s}", "key", key, "at", (json_int_t) at,
                              "status", failed ? "failed" : "sent");
        char *s = j ? json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
        json_decref(j);
        if (!s || asprintf(&line, "%s\n", s) < 0) {
                free(s);
                return -ENOMEM;
        }
        free(s);
        o->log_dirty = true;
        fd = open(o->log_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd < 0) {
                r = -errno;
                goto out;
        }
        size_t len = strlen(line), off = 0;
        while (off < len) {
                ssize_t n = write(fd, line + off, len - off);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n <= 0) {
                        r = n < 0 ? -errno : -EIO;
                        break;
                }
                off += (size_t) n;
        }
        if (r >= 0 && fdatasync(fd) < 0)
                r = -errno;
        close(fd);
out:
        free(line);
        return r;
}

/* Replays sent.log; a torn last line (crash while appending) is skipped. */
static int tombs_load_log(struct mail_outbox *o) {
        char *data = NULL, *save = NULL;
        int r = util_read_file(o->log_path, OUTBOX_MAX_SENT, &data, NULL);

        if (r == -ENOENT)
                return 0;
        if (r < 0)
                return r;
        o->log_dirty = true;
        for (char *line = strtok_r(data, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
                json_t *k = json_loads(line, 0, NULL);
                const char *key = json_string_value(json_object_get(k, "key"));
                const char *st = json_string_value(json_object_get(k, "status"));
                if (key)
                        r = tomb_add(o, key, json_integer_value(json_object_get(k, "at")),
                                     st && strcmp(st, "failed") == 0);
                json_decref(k);
                if (r < 0)
                        break;
        }
        free(data);
        return r < 0 ? r : 0;
}

static int tombs_load(struct mail_outbox *o) {
        char *data = NULL;
        json_t *root, *keys;
        int r = util_read_file(o->sent_path, OUTBOX_MAX_SENT, &data, NULL);

        if (r == -ENOENT)
                return 0;
        if (r == -EFBIG) {
                /* Not ours any more: set it aside, start a new one. */
                char *q = NULL;
                if (asprintf(&q, "%s.corrupt", o->sent_path) >= 0)
                        (void) rename(o->sent_path, q);
                free(q);
                return 0;
        }
        if (r < 0)
                return r;
        root = json_loads(data, 0, NULL);
        free(data);
        keys = json_object_get(root, "keys");
        for (size_t i = 0; json_is_array(keys) && i < json_array_size(keys); i++) {
                json_t *k = json_array_get(keys, i);
                const char *key = json_string_value(json_object_get(k, "key"));
                const char *st = json_string_value(json_object_get(k, "status"));
                if (!key)
                        continue;
                r = tomb_add(o, key, json_integer_value(json_object_get(k, "at")),
                             st && strcmp(st, "failed") == 0);
                if (r < 0)
                        break;
        }
        json_decref(root);
        return r < 0 ? r : 0;
}

/* ---- open / free ------------------------------------------------------ */

static int mkdir_private(const char *path) {
        if (mkdir(path, 0700) < 0 && errno != EEXIST)
                return -errno;
        struct stat st;
        if (stat(path, &st) < 0)
                return -errno;
        if (!S_ISDIR(st.st_mode))
                return -ENOTDIR;
        if ((st.st_mode & 07777) != 0700 && chmod(path, 0700) < 0)
                return -errno;
        return 0;
}

static int name_cmp(const void *a, const void *b) {
        return strcmp(*(char *const *) a, *(char *const *) b);
}

/* Sorted names of the *.msg files in dir. */
static int list_msgs(const char *dir, char ***ret, size_t *ret_n) {
        DIR *d = opendir(dir);
        char **names = NULL;
        size_t n = 0;
        struct dirent *de;

        if (!d)
                return -errno;
        while ((de = readdir(d))) {
                size_t l = strlen(de->d_name);
                if (l < 5 || strcmp(de->d_name + l - 4, ".msg") != 0 || de->d_name[0] == '.')
                        continue;
                char **nn = realloc(names, (n + 1) * sizeof(*nn));
                if (!nn)
                        goto oom;
                names = nn;
                names[n] = strdup(de->d_name);
                if (!names[n])
                        goto oom;
                n++;
        }
        closedir(d);
        if (n > 1)
                qsort(names, n, sizeof(*names), name_cmp);
        *ret = names;
        *ret_n = n;
        return 0;
oom:
        closedir(d);
        for (size_t i = 0; i < n; i++)
                free(names[i]);
        free(names);
        return -ENOMEM;
}

static int entries_add(struct mail_outbox *o, struct outbox_entry *e) {
        struct outbox_entry **n = realloc(o->entries, (o->n_entries + 1) * sizeof(*n));
        if (!n)
                return -ENOMEM;
        o->entries = n;
        o->entries[o->n_entries++] = e;
        return 0;
}

static void entries_remove(struct mail_outbox *o, struct outbox_entry *e) {
        for (size_t i = 0; i < o->n_entries; i++)
                if (o->entries[i] == e) {
                        memmove(o->entries + i, o->entries + i + 1,
                                (o->n_entries - i - 1) * sizeof(*o->entries));
                        o->n_entries--;
                        return;
                }
}

static void unlink_in(const char *dir, const char *name) {
        char *p = NULL;
        if (asprintf(&p, "%s/%s", dir, name) >= 0) {
                (void) unlink(p);
                free(p);
        }
}

/* Moves a message to failed/ with its final envelope. */
static int entry_move_failed(struct mail_outbox *o, struct outbox_entry *e) {
        int r = entry_write(o->failed_dir, e, "failed");
        if (r < 0)
                return r;
        unlink_in(o->dir, e->file);
        return 0;
}

/* Queued messages wait on disk, not in memory (2,500 mails of ~9 KiB were
 * most of the daemon's heap): the data is read back to send, rewrite or
 * move the message, and dropped again. */
static void entry_drop_data(struct outbox_entry *e) {
        util_freep(&e->msg.data);
}

static int entry_load_data(const struct mail_outbox *o, struct outbox_entry *e) {
        char *p = NULL, *data = NULL;
        size_t len = 0;
        int r;

        if (e->msg.data)
                return 0;
        if (asprintf(&p, "%s/%s", o->dir, e->file) < 0)
                return -ENOMEM;
        r = util_read_file(p, OUTBOX_MAX_FILE, &data, &len);
        free(p);
        if (r < 0)
                return r;
        char *nl = memchr(data, '\n', len);
        if (!nl) {
                free(data);
                return -EINVAL;
        }
        e->msg.len = len - (size_t) (nl + 1 - data);
        memmove(data, nl + 1, e->msg.len);
        data[e->msg.len] = '\0';
        e->msg.data = data;
        return 0;
}

static int load_entry(const char *dir, const char *name, struct outbox_entry **ret, bool *ret_failed) {
        char *p = NULL, *data = NULL;
        size_t len;
        int r;

        if (asprintf(&p, "%s/%s", dir, name) < 0)
                return -ENOMEM;
        r = util_read_file(p, OUTBOX_MAX_FILE, &data, &len);
        if (r >= 0)
                r = entry_parse(name, data, len, ret, ret_failed);
        free(data);
        free(p);
        return r;
}

/* The outbox's paths and directories (temp files a killed write left
 * behind removed), and the delivery tombstones (sent.json, sent.log). */
static int outbox_init(struct mail_outbox *o, const char *state_dir) {
        int r;

        if (asprintf(&o->dir, "%s/outbox", state_dir) < 0 ||
            asprintf(&o->failed_dir, "%s/outbox/failed", state_dir) < 0 ||
            asprintf(&o->sent_path, "%s/outbox/sent.json", state_dir) < 0 ||
            asprintf(&o->log_path, "%s/outbox/sent.log", state_dir) < 0)
                return -ENOMEM;
        r = mkdir_private(o->dir);
        if (r >= 0)
                r = mkdir_private(o->failed_dir);
        if (r < 0)
                return r;
        (void) util_remove_stale_temps(o->dir);
        (void) util_remove_stale_temps(o->failed_dir);
        r = tombs_load(o);
        if (r >= 0)
                r = tombs_load_log(o);
        return r;
}

/* A message in failed/ counts as done for deduplication. */
static int open_failed_entry(struct mail_outbox *o, const char *name, bool *tombs_dirty) {
        struct outbox_entry *e = NULL;
        bool failed;
        if (load_entry(o->failed_dir, name, &e, &failed) >= 0 && !tomb_has(o, e->dedup_key)) {
                tomb_add(o, e->dedup_key, e->queued_at, true);
                *tombs_dirty = true;
        }
        entry_free(e);
        return 0;
}

/* A message in the outbox: queued again, or out of the way (corrupt, sent
 * or failed before a crash).  Only -ENOMEM stops the open. */
static int open_queued_entry(struct mail_outbox *o, const char *name, bool *tombs_dirty) {
        struct outbox_entry *e = NULL;
        bool failed = false;
        char *p = NULL;
        int r;

        if (asprintf(&p, "%s/%s", o->dir, name) < 0)
                return -ENOMEM;
        r = load_entry(o->dir, name, &e, &failed);
        if (r == -EINVAL) {
                /* Not readable as ours: keep it out of the way. */
                char *q = NULL;
                if (asprintf(&q, "%s/%s.corrupt", o->failed_dir, name) >= 0)
                        (void) rename(p, q);
                free(q);
        } else if (r >= 0 && tomb_has(o, e->dedup_key)) {
                /* Delivered (or failed) before a crash; only the removal
                 * was missing. */
                (void) unlink(p);
                entry_free(e);
        } else if (r >= 0 && failed) {
                if (entry_move_failed(o, e) >= 0) {
                        tomb_add(o, e->dedup_key, e->queued_at, true);
                        *tombs_dirty = true;
                }
                entry_free(e);
        } else if (r >= 0) {
                r = entries_add(o, e);
                if (r < 0)
                        entry_free(e);
                else
                        entry_drop_data(e);
        }
        free(p);
        return r;
}

/* fn for every message file in dir, in name order; stops on -ENOMEM. */
static int open_each(struct mail_outbox *o, const char *dir,
                     int (*fn)(struct mail_outbox *, const char *, bool *), bool *tombs_dirty) {
        char **names = NULL;
        size_t n = 0;
        int r = list_msgs(dir, &names, &n);
        for (size_t i = 0; r >= 0 && i < n; i++)
                if (fn(o, names[i], tombs_dirty) == -ENOMEM)
                        r = -ENOMEM;
        for (size_t i = 0; names && i < n; i++)
                free(names[i]);
        free(names);
        return r;
}

int mail_outbox_open(const char *state_dir, struct mail_outbox **ret) {
        struct mail_outbox *o;
        bool tombs_dirty = false;
        int r;

        if (!state_dir || !ret)
                return -EINVAL;
        o = calloc(1, sizeof(*o));
        if (!o)
                return -ENOMEM;
        r = outbox_init(o, state_dir);
        tombs_dirty = o->log_dirty;
        if (r >= 0)
                r = open_each(o, o->failed_dir, open_failed_entry, &tombs_dirty);
        if (r >= 0)
                r = open_each(o, o->dir, open_queued_entry, &tombs_dirty);
        if (r < 0) {
                mail_outbox_free(o);
                return r;
        }
        if (tombs_dirty)
                (void) tombs_save(o, 0);
        *ret = o;
        return 0;
}

struct mail_outbox *mail_outbox_free(struct mail_outbox *o) {
        if (!o)
                return NULL;
        if (o->flush)
                o->flush->o = NULL;  /* must not happen: see mail.h */
        for (size_t i = 0; i < o->n_entries; i++)
                entry_free(o->entries[i]);
        free(o->entries);
        for (size_t i = 0; i < o->n_tombs; i++)
                free(o->tombs[i].key);
        free(o->tombs);
        free(o->dir);
        free(o->failed_dir);
        free(o->sent_path);
        free(o->log_path);
        free(o);
        return NULL;
}

size_t mail_outbox_pending(const struct mail_outbox *o) {
        return o ? o->n_entries : 0;
}

int64_t mail_outbox_next_attempt(const struct mail_outbox *o) {
        int64_t next = 0;
        for (size_t i = 0; o && i < o->n_entries; i++) {
                const struct outbox_entry *e = o->entries[i];
                if (!e->in_flight && (!next || e->next_attempt < next))
                        next = e->next_attempt > 0 ? e->next_attempt : 1;
        }
        return next;
}

/* ---- put -------------------------------------------------------------- */

static int strv_copy(char ***dst, char *const *src, size_t n) {
        *dst = calloc(n ? n : 1, sizeof(char *));
        if (!*dst)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                (*dst)[i] = strdup(src[i]);
                if (!(*dst)[i])
                        return -ENOMEM;
        }
        return 0;
}

void mail_outbox_set_max_file(struct mail_outbox *o, size_t bytes) {
        if (o)
                o->max_file = bytes;
}

int mail_outbox_put(struct mail_outbox *o, const char *dedup_key, const struct mail_message *m,
                    int64_t now) {
        struct outbox_entry *e;
        char rnd[8];
        int r;

        if (!o || !dedup_key || !*dedup_key || strlen(dedup_key) > OUTBOX_MAX_KEY ||
            util_has_ctl(dedup_key, false) || !m || !m->data || m->n_rcpt == 0 ||
            !mail_is_addr_spec(m->envelope_from))
                return -EINVAL;
        for (size_t i = 0; i < m->n_rcpt; i++)
                if (!mail_is_addr_spec(m->rcpt[i]))
                        return -EINVAL;
        /* Forget keys older than the retention period first. */
        for (size_t i = 0; i < o->n_tombs; i++)
                if (now > 0 && o->tombs[i].at > 0 && now - o->tombs[i].at > MAIL_OUTBOX_RETENTION) {
                        (void) tombs_save(o, now);
                        break;
                }
        if (tomb_has(o, dedup_key))
                return 1;
        for (size_t i = 0; i < o->n_entries; i++)
                if (strcmp(o->entries[i]->dedup_key, dedup_key) == 0)
                        return 1;

        e = calloc(1, sizeof(*e));
        if (!e)
                return -ENOMEM;
        r = util_random_bytes(rnd, sizeof(rnd));
        if (r < 0)
                goto fail;
        r = -ENOMEM;
        unsigned long long rv;
        memcpy(&rv, rnd, sizeof(rv));
        if (asprintf(&e->file, "%012lld-%016llx.msg", (long long) now, rv) < 0) {
                e->file = NULL;
                goto fail;
        }
        e->dedup_key = strdup(dedup_key);
        e->msg.message_id = util_strdup0(m->message_id);
        e->msg.envelope_from = strdup(m->envelope_from);
        e->msg.subject = util_strdup0(m->subject);
        e->msg.data = malloc(m->len + 1);
        if (!e->dedup_key || !e->msg.envelope_from || !e->msg.data ||
            (m->message_id && !e->msg.message_id) || (m->subject && !e->msg.subject))
                goto fail;
        if (strv_copy(&e->msg.rcpt, m->rcpt, m->n_rcpt) < 0) {
                e->msg.n_rcpt = m->n_rcpt;
                goto fail;
        }
        e->msg.n_rcpt = m->n_rcpt;
        memcpy(e->msg.data, m->data, m->len);
        e->msg.data[m->len] = '\0';
        e->msg.len = m->len;
        e->queued_at = now;
        e->next_attempt = now;
        r = entry_write_mode(o->dir, e, "pending", false, o->max_file);
        if (r < 0)
                goto fail;
        o->unsynced = true;
        r = entries_add(o, e);
        if (r < 0) {
                unlink_in(o->dir, e->file);
                goto fail;
        }
        entry_drop_data(e);
        return 0;
fail:
        entry_free(e);
        return r;
}

/* ---- flush ------------------------------------------------------------ */

static void flush_start_next(struct flush_state *fs);

static const char *fs_keep(struct flush_state *fs, const char *s) {
        if (!s)
                return NULL;
        char **n = realloc(fs->strings, (fs->n_strings + 1) * sizeof(*n));
        if (!n)
                return NULL;
        fs->strings = n;
        n[fs->n_strings] = strdup(s);
        return n[fs->n_strings] ? n[fs->n_strings++] : NULL;
}

static void flush_record(struct flush_state *fs, const struct outbox_entry *e,
                         enum mail_flush_outcome outcome, long code, const char *error, size_t n_refused) {
        struct mail_flush_item *items = realloc(fs->items, (fs->n_items + 1) * sizeof(*items));
        struct util_buf b;

        switch (outcome) {
        case MAIL_FLUSH_SENT: fs->st.sent++; break;
        case MAIL_FLUSH_RETRY: fs->st.retry_later++; break;
        case MAIL_FLUSH_FAILED: fs->st.failed++; break;
        }
        if (!items)
                return;
        fs->items = items;
        util_buf_init(&b, 64 * 1024);
        for (size_t i = 0; i < e->msg.n_rcpt; i++)
                (void) util_buf_printf(&b, "%s%s", i ? ", " : "", e->msg.rcpt[i]);
        char *rcpt = util_buf_steal(&b);
        items[fs->n_items++] = (struct mail_flush_item) {
                .dedup_key = fs_keep(fs, e->dedup_key),
                .message_id = fs_keep(fs, e->msg.message_id),
                .subject = fs_keep(fs, e->msg.subject),
                .rcpt = fs_keep(fs, rcpt),
                .outcome = outcome,
                .smtp_code = code,
                .error = fs_keep(fs, error),
                .n_refused = n_refused,
                .attempts = e->attempts,
                .next_attempt = e->next_attempt,
        };
        free(rcpt);
}

static void flush_finish(struct flush_state *fs) {
        fs->st.items = fs->items;
        fs->st.n_items = fs->n_items;
        if (fs->o && fs->o->log_dirty)
                (void) tombs_save(fs->o, fs->now);     /* folds sent.log in */
        if (fs->o)
                fs->o->flush = NULL;
        if (fs->cb)
                fs->cb(fs->ud, &fs->st);
        for (size_t i = 0; i < fs->n_strings; i++)
                free(fs->strings[i]);
        free(fs->strings);
        free(fs->items);
        free(fs->queue);
        free(fs);
}

/* Applies the result of one attempt to e (durably) and records it. */
static void flush_apply(struct flush_state *fs, struct outbox_entry *e, const struct mail_result *res) {
        struct mail_outbox *o = fs->o;
        int64_t now = fs->now;       /* the caller's clock drives the schedule */
        char err[OUTBOX_ERROR_MAX + 1];

        e->in_flight = false;
        e->attempts++;
        e->smtp_code = res->smtp_code;
        snprintf(err, sizeof(err), "%s", res->error ? res->error : "");
        free(e->last_error);
        e->last_error = err[0] ? strdup(err) : NULL;

        if (res->ok) {
                flush_record(fs, e, MAIL_FLUSH_SENT, res->smtp_code, res->error, res->n_refused);
                /* Tombstone first, then remove the file. */
                (void) tomb_record(o, e->dedup_key, now, false);
                unlink_in(o->dir, e->file);
                entries_remove(o, e);
                entry_free(e);
                return;
        }
        bool give_up = res->permanent ||
                       (e->queued_at > 0 && now - e->queued_at >= MAIL_OUTBOX_MAX_AGE);
        if (give_up) {
                if (!res->permanent) {
                        char more[OUTBOX_ERROR_MAX + 96];
                        snprintf(more, sizeof(more), "gave up after %d attempts: %s", e->attempts, err);
                        free(e->last_error);
                        e->last_error = strdup(more);
                }
                flush_record(fs, e, MAIL_FLUSH_FAILED, res->smtp_code, e->last_error, res->n_refused);
                if (entry_load_data(o, e) >= 0)
                        (void) entry_move_failed(o, e);
                (void) tomb_record(o, e->dedup_key, now, true);
                entries_remove(o, e);
                entry_free(e);
                return;
        }
        size_t k = (size_t) (e->attempts - 1);
        size_t nb = sizeof(outbox_backoff) / sizeof(outbox_backoff[0]);
        e->next_attempt = now + outbox_backoff[k < nb ? k : nb - 1];
        if (entry_load_data(o, e) >= 0)
                (void) entry_write(o->dir, e, "pending");
        entry_drop_data(e);
        flush_record(fs, e, MAIL_FLUSH_RETRY, res->smtp_code, e->last_error, res->n_refused);
}

static void flush_sent(void *ud, const struct mail_result *res) {
        struct flush_attempt *a = ud;
        struct flush_state *fs = a->fs;

        if (fs->o)
                flush_apply(fs, a->e, res);
        free(a);
        fs->running--;
        flush_start_next(fs);
}

static void flush_start_next(struct flush_state *fs) {
        while (fs->o && fs->running < MAIL_OUTBOX_PARALLEL && fs->next < fs->n_queue) {
                if (fs->o->gate && !fs->o->gate(fs->o->gate_ud)) {
                        fs->next = fs->n_queue;   /* not ours to send any more: left queued, untouched */
                        break;
                }
                struct outbox_entry *e = fs->queue[fs->next++];
                struct flush_attempt *a = calloc(1, sizeof(*a));
                int r = a ? 0 : -ENOMEM;

                if (a) {
                        a->fs = fs;
                        a->e = e;
                        e->in_flight = true;
                        fs->running++;
                        r = entry_load_data(fs->o, e);
                        if (r >= 0)
                                r = mail_send(fs->t, &e->msg, flush_sent, a);
                        entry_drop_data(e);      /* the transport has its copy */
                        if (r < 0) {
                                fs->running--;
                                free(a);
                        }
                }
                if (r < 0) {
                        char err[128];
                        snprintf(err, sizeof(err), "cannot start the transfer: %s", strerror(-r));
                        struct mail_result res = { .error = err, .permanent = r == -EINVAL };
                        flush_apply(fs, e, &res);
                }
        }
        if (fs->running == 0 && (fs->next >= fs->n_queue || !fs->o))
                flush_finish(fs);
}

void mail_outbox_set_gate(struct mail_outbox *o, bool (*gate)(void *ud), void *ud) {
        o->gate = gate;
        o->gate_ud = ud;
}

int mail_outbox_flush(struct mail_outbox *o, struct mail_transport *t, int64_t now,
                      mail_flush_fn cb, void *ud) {
        struct flush_state *fs;

        if (!o || !t)
                return -EINVAL;
        if (o->flush)
                return -EBUSY;
        /* nothing is sent before it is durably queued */
        int r = mail_outbox_sync(o);
        if (r < 0)
                return r;
        fs = calloc(1, sizeof(*fs));
        if (!fs)
                return -ENOMEM;
        fs->o = o;
        fs->t = t;
        fs->now = now;
        fs->cb = cb;
        fs->ud = ud;
        fs->queue = calloc(o->n_entries ? o->n_entries : 1, sizeof(*fs->queue));
        if (!fs->queue) {
                free(fs);
                return -ENOMEM;
        }
        for (size_t i = 0; i < o->n_entries; i++) {
                struct outbox_entry *e = o->entries[i];
                if (!e->in_flight && e->next_attempt <= now)
                        fs->queue[fs->n_queue++] = e;
        }
        o->flush = fs;
        flush_start_next(fs);
        return 0;
}
