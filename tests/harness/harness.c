/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <curl/curl.h>

#include "harness.h"
#include "util.h"

#define HARNESS_HTTP_MAX (128u * 1024 * 1024)
#define HARNESS_START_TIMEOUT_MS 20000

extern char **environ;

char *harness_tmpdir(void) {
        const char *base = getenv("TMPDIR");
        char *path;

        if (asprintf(&path, "%s/partnerd-test.XXXXXX", base && *base ? base : "/tmp") < 0)
                return NULL;
        if (!mkdtemp(path)) {
                free(path);
                return NULL;
        }
        return path;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
        remove(path);
        return 0;
}

void harness_rmrf(const char *path) {
        if (path)
                nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

size_t harness_count_files(const char *dir) {
        DIR *d = opendir(dir);
        size_t n = 0;
        for (struct dirent *de; d && (de = readdir(d)); )
                n += de->d_name[0] != '.' && de->d_type == DT_REG;
        if (d)
                closedir(d);
        return n;
}

static int redirect(int fd, const char *path) {
        int f = open(path ? path : "/dev/null", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

        if (f < 0)
                return -1;
        if (dup2(f, fd) < 0)
                return -1;
        close(f);
        return 0;
}

pid_t harness_spawn(char *const argv[], char *const envp[], const char *stdout_path,
                    const char *stderr_path) {
        pid_t pid;

        fflush(NULL);
        pid = fork();
        if (pid < 0)
                return -errno;
        if (pid == 0) {
                sigset_t none;
                sigemptyset(&none);
                sigprocmask(SIG_SETMASK, &none, NULL);
                if (redirect(STDOUT_FILENO, stdout_path) < 0 || redirect(STDERR_FILENO, stderr_path) < 0)
                        _exit(126);
                int in = open("/dev/null", O_RDONLY);
                if (in >= 0)
                        dup2(in, STDIN_FILENO);
                execvpe(argv[0], argv, envp ? envp : environ);
                _exit(127);
        }
        return pid;
}

static int decode_status(int st) {
        return WIFEXITED(st) ? WEXITSTATUS(st) : WIFSIGNALED(st) ? 128 + WTERMSIG(st) : 255;
}

int harness_wait(pid_t pid, int timeout_ms, int *ret_status) {
        uint64_t end = util_now_mono_ms() + (uint64_t) (timeout_ms > 0 ? timeout_ms : 0);
        int st;

        for (;;) {
                pid_t r = waitpid(pid, &st, WNOHANG);
                if (r == pid) {
                        if (ret_status)
                                *ret_status = decode_status(st);
                        return 0;
                }
                if (r < 0)
                        return -errno;
                if (util_now_mono_ms() >= end)
                        return -ETIMEDOUT;
                struct timespec ts = { .tv_nsec = 5 * 1000 * 1000 };
                nanosleep(&ts, NULL);
        }
}

int harness_kill(pid_t pid, int sig, int timeout_ms) {
        int st = 0, r;

        if (pid <= 0)
                return -EINVAL;
        if (kill(pid, sig) < 0 && errno != ESRCH)
                return -errno;
        r = harness_wait(pid, timeout_ms, &st);
        if (r == -ETIMEDOUT) {
                kill(pid, SIGKILL);
                r = harness_wait(pid, 5000, &st);
        }
        return r < 0 ? r : st;
}

char *harness_getenv_path(const char *env, const char *default_rel) {
        const char *v = getenv(env), *bd = getenv("TEST_BUILDDIR");
        char *out;

        if (v && *v)
                return strdup(v);
        if (asprintf(&out, "%s/%s", bd && *bd ? bd : "build", default_rel) < 0)
                return NULL;
        return out;
}

char *harness_src_path(const char *rel) {
        const char *sd = getenv("TEST_SRCDIR");
        char *out;

        if (asprintf(&out, "%s/%s", sd && *sd ? sd : ".", rel) < 0)
                return NULL;
        return out;
}

static bool is_dir(const char *p) {
        struct stat st;
        return p && stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

char *harness_shared_dir(void) {
        const char *env = getenv("SHARED_DIR");
        char *p;

        if (env && *env)
                return is_dir(env) ? strdup(env) : NULL;
        p = harness_src_path("../shared");
        if (!is_dir(p))
                util_freep(&p);
        return p;
}

/* Waits for the fake's port file while making sure it did not die. */
static int wait_port_file(struct harness_fake *fake, const char *port_file) {
        uint64_t end = util_now_mono_ms() + HARNESS_START_TIMEOUT_MS;
        char *data = NULL;
        int st;

        while (util_now_mono_ms() < end) {
                if (util_read_file(port_file, 64, &data, NULL) == 0) {
                        fake->port = atoi(data);
                        free(data);
                        return fake->port > 0 ? 0 : -EIO;
                }
                if (harness_wait(fake->pid, 10, &st) == 0) {
                        fake->pid = 0;
                        return -ECHILD;
                }
        }
        return -ETIMEDOUT;
}

int harness_fake_start_args(const char *scenario_path, const char *const *extra_args,
                            struct harness_fake *fake) {
        char *bin = harness_getenv_path("FAKEPLATFORM_BIN", "fakeplatform");
        char pf[4096], out[4096], err[4096], log[4096];
        const char *argv[32] = { 0 };
        char *wrap = util_strdup0(getenv("FAKEPLATFORM_WRAPPER")), *save = NULL, *w;
        size_t n = 0;
        int r;

        *fake = (struct harness_fake) { 0 };
        fake->dir = harness_tmpdir();
        if (!bin || !fake->dir) {
                free(bin);
                free(wrap);
                return -ENOMEM;
        }
        snprintf(pf, sizeof(pf), "%s/port", fake->dir);
        snprintf(out, sizeof(out), "%s/stdout", fake->dir);
        snprintf(err, sizeof(err), "%s/stderr", fake->dir);
        snprintf(log, sizeof(log), "%s/requests.jsonl", fake->dir);
        /* e.g. FAKEPLATFORM_WRAPPER="valgrind -q --error-exitcode=99" */
        for (w = wrap ? strtok_r(wrap, " ", &save) : NULL; w && n < 16; w = strtok_r(NULL, " ", &save))
                argv[n++] = w;
        argv[n++] = bin;
        argv[n++] = "--scenario";
        argv[n++] = scenario_path;
        argv[n++] = "--port";
        argv[n++] = "0";
        argv[n++] = "--port-file";
        argv[n++] = pf;
        argv[n++] = "--log";
        argv[n++] = log;
        for (size_t i = 0; extra_args && extra_args[i] && n < 31; i++)
                argv[n++] = extra_args[i];
        fake->pid = harness_spawn((char *const *) argv, NULL, out, err);
        free(bin);
        free(wrap);
        if (fake->pid < 0) {
                r = fake->pid;
                fake->pid = 0;
                return r;
        }
        r = wait_port_file(fake, pf);
        if (r < 0) {
                harness_fake_stop(fake);
                return r;
        }
        snprintf(fake->base_url, sizeof(fake->base_url), "http://127.0.0.1:%d", fake->port);
        return 0;
}

int harness_fake_start(const char *scenario_path, struct harness_fake *fake) {
        return harness_fake_start_args(scenario_path, NULL, fake);
}

int harness_fake_stop(struct harness_fake *fake) {
        int r = 0;

        if (fake->pid > 0)
                r = harness_kill(fake->pid, SIGTERM, 10000);
        fake->pid = 0;
        if (getenv("HARNESS_KEEP_TMP") == NULL)
                harness_rmrf(fake->dir);
        util_freep(&fake->dir);
        return r;
}

const char *harness_fake_url(const struct harness_fake *fake, const char *path, char *buf, size_t n) {
        snprintf(buf, n, "%s%s", fake->base_url, path);
        return buf;
}

static size_t collect(char *data, size_t size, size_t nmemb, void *userdata) {
        struct util_buf *b = userdata;

        return util_buf_append(b, data, size * nmemb) < 0 ? 0 : size * nmemb;
}

int harness_http(const char *method, const char *url, const char *const *headers,
                 const char *body, long *ret_status, char **ret_body, char **ret_headers) {
        struct util_buf b, h;
        struct curl_slist *hl = NULL;
        CURL *c = curl_easy_init();
        CURLcode cc;

        if (!c)
                return -ENOMEM;
        util_buf_init(&b, HARNESS_HTTP_MAX);
        util_buf_init(&h, 1024 * 1024);
        for (size_t i = 0; headers && headers[i]; i++)
                hl = curl_slist_append(hl, headers[i]);
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
        curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
        curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, collect);
        curl_easy_setopt(c, CURLOPT_HEADERDATA, &h);
        curl_easy_setopt(c, CURLOPT_TIMEOUT, 60L);
        curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
        if (body) {
                curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
                curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long) strlen(body));
        }
        cc = curl_easy_perform(c);
        if (cc == CURLE_OK && ret_status)
                curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, ret_status);
        curl_easy_cleanup(c);
        curl_slist_free_all(hl);
        if (cc == CURLE_OK && ret_body)
                *ret_body = util_buf_steal(&b);
        if (cc == CURLE_OK && ret_headers)
                *ret_headers = util_buf_steal(&h);
        util_buf_free(&b);
        util_buf_free(&h);
        return cc == CURLE_OK ? 0 : -EIO;
}

int harness_http_get(const char *url, long *ret_status, char **ret_body) {
        return harness_http("GET", url, NULL, NULL, ret_status, ret_body, NULL);
}

int harness_http_post(const char *url, const char *body, long *ret_status, char **ret_body) {
        static const char *const json_hdr[] = { "Content-Type: application/json", NULL };
        return harness_http("POST", url, body ? json_hdr : NULL, body ? body : "", ret_status,
                            ret_body, NULL);
}

/* GET/POST a control route and parse the JSON answer. */
static json_t *control(struct harness_fake *fake, const char *method, const char *path,
                       const char *body, long *ret_status) {
        char url[512], *resp = NULL;
        json_t *j = NULL;
        long st = 0;

        harness_fake_url(fake, path, url, sizeof(url));
        if (harness_http(method, url, NULL, body, &st, &resp, NULL) == 0)
                j = json_loads(resp, JSON_DECODE_ANY, NULL);
        free(resp);
        if (ret_status)
                *ret_status = st;
        return j;
}

json_t *harness_fake_log(struct harness_fake *fake) {
        json_t *j = control(fake, "GET", "/_fake/log", NULL, NULL);

        if (!json_is_array(j))
                return json_decref(j), NULL;
        return j;
}

int harness_fake_count(struct harness_fake *fake, const char *method, const char *path_substring) {
        json_t *log = harness_fake_log(fake), *e;
        size_t i;
        int n = 0;

        if (!log)
                return -EIO;
        json_array_foreach(log, i, e) {
                const char *m = json_string_value(json_object_get(e, "method"));
                const char *p = json_string_value(json_object_get(e, "path"));
                if ((!method || (m && strcmp(m, method) == 0)) &&
                    (!path_substring || (p && strstr(p, path_substring))))
                        n++;
        }
        json_decref(log);
        return n;
}

int harness_fake_accept(struct harness_fake *fake, const char *tenant_id_or_domain) {
        char path[300];
        long st = 0;
        json_t *j;

        snprintf(path, sizeof(path), "/_fake/accept/%s", tenant_id_or_domain);
        j = control(fake, "POST", path, "", &st);
        json_decref(j);
        return st == 200 ? 0 : st == 404 ? -ENOENT : -EIO;
}

char *harness_fake_order_status(struct harness_fake *fake, const char *order_id) {
        json_t *j = control(fake, "GET", "/_fake/orders", NULL, NULL), *e;
        char *out = NULL;
        size_t i;

        json_array_foreach(j, i, e) {
                const char *id = json_string_value(json_object_get(e, "id"));
                if (id && strcmp(id, order_id) == 0)
                        out = util_strdup0(json_string_value(json_object_get(e, "status")));
        }
        json_decref(j);
        return out;
}

int harness_fake_fault(struct harness_fake *fake, const char *json) {
        long st = 0;
        json_t *j = control(fake, "POST", "/_fake/fault", json, &st);

        json_decref(j);
        return st == 200 ? 0 : -EINVAL;
}
