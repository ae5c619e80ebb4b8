/* SPDX-License-Identifier: MIT */
/*
 * harness: shared helpers for the cmocka test binaries: temp dirs, child
 * processes, the fake platform, blocking HTTP calls.  Every function
 * returns a negative errno (or NULL) on failure and never aborts, so a
 * test can assert on the result.
 */
#pragma once

#include <stdbool.h>
#include <sys/types.h>
#include <jansson.h>

/* A fresh directory under $TMPDIR (or /tmp); malloc'd path. */
char *harness_tmpdir(void);
/* Removes a directory tree (best effort); NULL is accepted. */
void harness_rmrf(const char *path);
/* Regular files directly in dir (not hidden ones); 0 when unreadable. */
size_t harness_count_files(const char *dir);

/* Starts argv[0] (PATH is searched) with envp (NULL: inherit ours), its
 * stdout/stderr appended to the given files (NULL: /dev/null).  Returns the
 * pid or a negative errno. */
pid_t harness_spawn(char *const argv[], char *const envp[], const char *stdout_path,
                    const char *stderr_path);
/* Waits up to timeout_ms for pid.  0 with *ret_status (exit code, or 128 +
 * signal) set, -ETIMEDOUT if it is still running. */
int harness_wait(pid_t pid, int timeout_ms, int *ret_status);
/* Sends sig, waits up to timeout_ms, then SIGKILLs.  Returns the exit
 * status as harness_wait does (negative errno on failure). */
int harness_kill(pid_t pid, int sig, int timeout_ms);

struct harness_fake {
        pid_t pid;
        int port;
        char base_url[64];      /* "http://127.0.0.1:PORT", no trailing slash */
        char *dir;              /* temp dir: port file, stdout, stderr, requests.jsonl */
};

/* Starts build/fakeplatform (or $FAKEPLATFORM_BIN) on a free port and
 * waits for its port file.  extra_args (NULL-terminated, may be NULL) are
 * appended, e.g. { "--latency-ms", "300", NULL }. */
int harness_fake_start(const char *scenario_path, struct harness_fake *fake);
int harness_fake_start_args(const char *scenario_path, const char *const *extra_args,
                            struct harness_fake *fake);
/* SIGTERM, wait, free; returns the fake's exit status (0 when clean). */
int harness_fake_stop(struct harness_fake *fake);
/* "<base_url><path>" in buf. */
const char *harness_fake_url(const struct harness_fake *fake, const char *path, char *buf, size_t n);

/* Blocking HTTP on loopback.  headers: NULL-terminated "Name: value"
 * strings (may be NULL); body NULL = no body.  *ret_body (malloc'd, NUL
 * terminated) and *ret_headers (raw response header block) are optional. */
int harness_http(const char *method, const char *url, const char *const *headers,
                 const char *body, long *ret_status, char **ret_body, char **ret_headers);
int harness_http_get(const char *url, long *ret_status, char **ret_body);
int harness_http_post(const char *url, const char *body, long *ret_status, char **ret_body);

/* Control routes of the fake. */
json_t *harness_fake_log(struct harness_fake *fake);
/* Requests in the log with this method (NULL: any) whose path contains
 * path_substring (NULL: any); negative errno on failure. */
int harness_fake_count(struct harness_fake *fake, const char *method, const char *path_substring);
int harness_fake_accept(struct harness_fake *fake, const char *tenant_id_or_domain);
/* malloc'd status of the order ("Querying"...), NULL if unknown. */
char *harness_fake_order_status(struct harness_fake *fake, const char *order_id);
/* POSTs a JSON fault description to /_fake/fault. */
int harness_fake_fault(struct harness_fake *fake, const char *json);

/* $env if set, else $TEST_BUILDDIR/default_rel, else build/default_rel.
 * malloc'd. */
char *harness_getenv_path(const char *env, const char *default_rel);
/* $TEST_SRCDIR/rel (or ./rel); malloc'd. */
char *harness_src_path(const char *rel);
/* $SHARED_DIR, else ../shared next to $TEST_SRCDIR; NULL when absent.
 * malloc'd. */
char *harness_shared_dir(void);
