/* SPDX-License-Identifier: MIT */
#include "smtp.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define PYTHON "/usr/bin/python3"

struct harness_smtp {
        pid_t pid;
        int port;
        char *tmp;
        char *dir;
        char *stall;
        char url[64];
};

static char *tool_path(const char *name) {
        const char *src = getenv("TEST_SRCDIR");
        char *p = NULL;
        if (asprintf(&p, "%s/tests/tools/%s", src && *src ? src : ".", name) < 0)
                return NULL;
        return p;
}

char *harness_smtp_mkdtemp(void) {
        char *d = strdup("/tmp/partnerd-smtp-XXXXXX");
        if (d && !mkdtemp(d)) {
                free(d);
                return NULL;
        }
        return d;
}

void harness_smtp_rm_rf(const char *dir) {
        if (!dir || strncmp(dir, "/tmp/", 5) != 0)
                return;
        pid_t pid = fork();
        if (pid == 0) {
                execl("/bin/rm", "rm", "-rf", "--", dir, (char *) NULL);
                _exit(127);
        }
        if (pid > 0)
                while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                        ;
}

static void sleep_ms(long ms) {
        struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
                ;
}

int harness_smtp_start(const struct harness_smtp_options *o, struct harness_smtp **ret) {
        struct harness_smtp_options none = {};
        struct harness_smtp *s = calloc(1, sizeof(*s));
        char *script = tool_path("smtpd.py"), *portfile = NULL;
        char portbuf[16], faild[16], replyc[16], dropd[16];
        const char *argv[32];
        size_t n = 0;

        if (!o)
                o = &none;
        if (!s || !script)
                goto fail;
        s->tmp = harness_smtp_mkdtemp();
        if (!s->tmp || asprintf(&s->dir, "%s/messages", s->tmp) < 0 ||
            asprintf(&portfile, "%s/port", s->tmp) < 0 || asprintf(&s->stall, "%s/stall-data", s->tmp) < 0)
                goto fail;
        snprintf(portbuf, sizeof(portbuf), "%d", o->port);
        snprintf(faild, sizeof(faild), "%d", o->fail_data);
        snprintf(replyc, sizeof(replyc), "%d", o->reply_code);
        snprintf(dropd, sizeof(dropd), "%d", o->drop_after_data);
        argv[n++] = PYTHON;
        argv[n++] = script;
        argv[n++] = "--dir";
        argv[n++] = s->dir;
        argv[n++] = "--port";
        argv[n++] = portbuf;
        argv[n++] = "--port-file";
        argv[n++] = portfile;
        argv[n++] = "--fail-data";
        argv[n++] = faild;
        argv[n++] = "--reply-code";
        argv[n++] = replyc;
        argv[n++] = "--drop-after-data";
        argv[n++] = dropd;
        argv[n++] = "--stall-file";
        argv[n++] = s->stall;
        if (o->tls_cert) {
                argv[n++] = "--tls-cert";
                argv[n++] = o->tls_cert;
                argv[n++] = "--tls-key";
                argv[n++] = o->tls_key;
        }
        if (o->implicit_tls)
                argv[n++] = "--implicit-tls";
        if (o->host) {
                argv[n++] = "--host";
                argv[n++] = o->host;
        }
        if (o->auth) {
                argv[n++] = "--auth";
                argv[n++] = o->auth;
        }
        for (size_t i = 0; i < 4 && o->refuse[i]; i++) {
                argv[n++] = "--refuse";
                argv[n++] = o->refuse[i];
        }
        argv[n] = NULL;

        s->pid = fork();
        if (s->pid < 0)
                goto fail;
        if (s->pid == 0) {
                /* Dies with the test, even when an assertion skipped stop. */
                prctl(PR_SET_PDEATHSIG, SIGTERM);
                /* stdout (the "listening" line) is not needed: the port file is. */
                if (!freopen("/dev/null", "w", stdout))
                        _exit(127);
                execv(PYTHON, (char *const *) argv);
                _exit(127);
        }
        for (int i = 0; i < 200; i++) {
                char *data = NULL;
                if (util_read_file(portfile, 64, &data, NULL) == 0) {
                        s->port = atoi(data);
                        free(data);
                        break;
                }
                int st;
                if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
                        s->pid = 0;
                        goto fail;
                }
                sleep_ms(50);
        }
        if (s->port <= 0)
                goto fail;
        snprintf(s->url, sizeof(s->url), "%s://%s:%d", o->implicit_tls ? "smtps" : "smtp",
                 o->host ? o->host : "127.0.0.1", s->port);
        free(script);
        free(portfile);
        *ret = s;
        return 0;
fail:
        free(script);
        free(portfile);
        harness_smtp_stop(s);
        return -EIO;
}

void harness_smtp_stop(struct harness_smtp *s) {
        if (!s)
                return;
        if (s->pid > 0) {
                kill(s->pid, SIGTERM);
                int st;
                for (int i = 0; i < 100; i++) {
                        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
                                s->pid = 0;
                                break;
                        }
                        sleep_ms(50);
                }
                if (s->pid > 0) {
                        kill(s->pid, SIGKILL);
                        waitpid(s->pid, &st, 0);
                }
        }
        harness_smtp_rm_rf(s->tmp);
        free(s->tmp);
        free(s->dir);
        free(s->stall);
        free(s);
}

int harness_smtp_port(const struct harness_smtp *s) {
        return s->port;
}

const char *harness_smtp_url(const struct harness_smtp *s) {
        return s->url;
}

static char *msg_path(const struct harness_smtp *s, size_t i, const char *ext) {
        char *p = NULL;
        if (asprintf(&p, "%s/%04zu.%s", s->dir, i + 1, ext) < 0)
                return NULL;
        return p;
}

size_t harness_smtp_count(const struct harness_smtp *s) {
        size_t n = 0;
        for (;; n++) {
                char *p = msg_path(s, n, "eml");
                bool there = p && access(p, F_OK) == 0;
                free(p);
                if (!there)
                        return n;
        }
}

const char *harness_smtp_stall_file(const struct harness_smtp *s) {
        return s->stall;
}

json_t *harness_smtp_sidecar(const struct harness_smtp *s, size_t i) {
        char *p = msg_path(s, i, "json");
        json_t *j = p ? json_load_file(p, 0, NULL) : NULL;
        free(p);
        return j;
}

char *harness_smtp_raw(const struct harness_smtp *s, size_t i, size_t *ret_len) {
        char *p = msg_path(s, i, "eml"), *data = NULL;
        if (!p || util_read_file(p, 64u << 20, &data, ret_len) < 0)
                data = NULL;
        free(p);
        return data;
}

json_t *harness_smtp_parse(const struct harness_smtp *s, size_t i) {
        char *eml = msg_path(s, i, "eml"), *side = msg_path(s, i, "json"), *script = tool_path("mailparse.py");
        json_t *j = NULL;
        int pipefd[2] = { -1, -1 };

        if (!eml || !side || !script || pipe(pipefd) < 0)
                goto out;
        pid_t pid = fork();
        if (pid < 0)
                goto out;
        if (pid == 0) {
                dup2(pipefd[1], 1);
                close(pipefd[0]);
                close(pipefd[1]);
                execl(PYTHON, PYTHON, script, eml, side, (char *) NULL);
                _exit(127);
        }
        close(pipefd[1]);
        pipefd[1] = -1;
        FILE *f = fdopen(pipefd[0], "r");
        if (f) {
                j = json_loadf(f, 0, NULL);
                fclose(f);
                pipefd[0] = -1;
        }
        int st;
        waitpid(pid, &st, 0);
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
                json_decref(j);
                j = NULL;
        }
out:
        if (pipefd[0] >= 0)
                close(pipefd[0]);
        if (pipefd[1] >= 0)
                close(pipefd[1]);
        free(eml);
        free(side);
        free(script);
        return j;
}

static int run_sh(const char *cmd) {
        int st = system(cmd);
        return st == 0 ? 0 : -EIO;
}

int harness_smtp_make_certs(const char *dir) {
        char *cmd = NULL;
        int r;
        /* A CA, then a server key and certificate signed by it with the
         * names the client checks (127.0.0.1, localhost). */
        if (asprintf(&cmd,
                     "cd '%s' && "
                     "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
                     "-subj '/CN=partnerd test CA' -addext basicConstraints=critical,CA:TRUE "
                     "-addext keyUsage=critical,keyCertSign,cRLSign >/dev/null 2>&1 && "
                     "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
                     "-subj '/CN=localhost' >/dev/null 2>&1 && "
                     "printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nbasicConstraints=CA:FALSE\\n"
                     "extendedKeyUsage=serverAuth\\n' > ext.cnf && "
                     "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
                     "-out server.pem -days 2 -extfile ext.cnf >/dev/null 2>&1",
                     dir) < 0)
                return -ENOMEM;
        r = run_sh(cmd);
        free(cmd);
        return r;
}
