/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "etcdrun.h"
#include "harness.h"
#include "util.h"

#define ETCD_START_TIMEOUT_MS 20000

char *harness_etcd_bin(void) {
        const char *env = getenv("ETCD_BIN");
        const char *bin = env && *env ? env : "/usr/bin/etcd";
        return access(bin, X_OK) == 0 ? strdup(bin) : NULL;
}

/* A port the kernel just handed out (a small race, as every test has). */
static int free_port(void) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        socklen_t len = sizeof(a);
        int port = -1;
        if (fd >= 0 && bind(fd, (struct sockaddr *) &a, sizeof(a)) == 0 &&
            getsockname(fd, (struct sockaddr *) &a, &len) == 0)
                port = ntohs(a.sin_port);
        if (fd >= 0)
                close(fd);
        return port;
}

static void sleep_ms(int ms) {
        struct timespec ts = { ms / 1000, (long) (ms % 1000) * 1000000L };
        nanosleep(&ts, NULL);
}

static int spawn_member(struct harness_etcd *e, size_t i) {
        char *bin = harness_etcd_bin();
        if (!bin)
                return -ENOENT;
        char name[16], data[512], listen_c[64], peer[64], cluster[512] = "", log[512];
        snprintf(name, sizeof(name), "m%zu", i);
        snprintf(data, sizeof(data), "%s/%s", e->dir, name);
        snprintf(log, sizeof(log), "%s/%s.log", e->dir, name);
        snprintf(listen_c, sizeof(listen_c), "%s", e->m[i].url);
        snprintf(peer, sizeof(peer), "http://127.0.0.1:%d", e->m[i].peer_port);
        for (size_t k = 0; k < e->n; k++) {
                size_t len = strlen(cluster);
                snprintf(cluster + len, sizeof(cluster) - len, "%sm%zu=http://127.0.0.1:%d",
                         k ? "," : "", k, e->m[k].peer_port);
        }
        /* Short heartbeat/election so that losing quorum shows quickly. */
        char ca[600], cert[600], key[600];
        snprintf(ca, sizeof(ca), "--trusted-ca-file=%s/ca.pem", e->tls_dir ? e->tls_dir : "");
        snprintf(cert, sizeof(cert), "--cert-file=%s/server.pem", e->tls_dir ? e->tls_dir : "");
        snprintf(key, sizeof(key), "--key-file=%s/server.key", e->tls_dir ? e->tls_dir : "");
        char *argv[] = { bin, "--name", name, "--data-dir", data, "--listen-client-urls", listen_c,
                         "--advertise-client-urls", listen_c, "--listen-peer-urls", peer,
                         "--initial-advertise-peer-urls", peer, "--initial-cluster", cluster,
                         "--initial-cluster-state", "new", "--initial-cluster-token", e->dir,
                         "--heartbeat-interval", "50", "--election-timeout", "500",
                         e->tls_dir ? "--client-cert-auth" : NULL, ca, cert, key, NULL };
        pid_t pid = harness_spawn(argv, NULL, log, log);
        free(bin);
        if (pid < 0)
                return (int) pid;
        e->m[i].pid = pid;
        return 0;
}

bool harness_etcd_writable(struct harness_etcd *e, size_t i, int timeout_ms) {
        char url[128];
        snprintf(url, sizeof(url), "%s/v3/kv/put", e->m[i].url);
        for (int waited = 0; waited <= timeout_ms; waited += 100) {
                long status = 0;
                char *body = NULL;
                int r = harness_http_post(url, "{\"key\":\"X19oYXJuZXNzX18=\",\"value\":\"MQ==\"}",
                                          &status, &body);
                free(body);
                if (r == 0 && status == 200)
                        return true;
                sleep_ms(100);
        }
        return false;
}

/* Plaintext: a put succeeds.  https: the member accepts connections (the
 * harness's HTTP helper has no client certificate). */
static bool harness_etcd_ready(struct harness_etcd *e) {
        if (!e->tls_dir)
                return harness_etcd_writable(e, 0, ETCD_START_TIMEOUT_MS);
        for (int waited = 0; waited <= ETCD_START_TIMEOUT_MS; waited += 100) {
                int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
                struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                                         .sin_port = htons((uint16_t) e->m[0].client_port) };
                bool up = fd >= 0 && connect(fd, (struct sockaddr *) &a, sizeof(a)) == 0;
                if (fd >= 0)
                        close(fd);
                if (up)
                        return true;
                sleep_ms(100);
        }
        return false;
}

static const char tls_script[] =
        "set -e; cd \"$0\"; o=/usr/bin/openssl; ec='-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes';"
        "for ca in ca otherca; do $o req -x509 $ec -keyout $ca.key -out $ca.pem -days 2 -subj /CN=$ca; done;"
        "printf 'subjectAltName=IP:127.0.0.1\\n' > server.ext;"
        "printf 'extendedKeyUsage=clientAuth\\n' > client.ext;"
        "for c in server:ca client:ca other:otherca; do n=${c%%:*}; ca=${c#*:}; ext=client.ext;"
        " [ $n = server ] && ext=server.ext;"
        " $o req $ec -keyout $n.key -out $n.csr -subj /CN=$n;"
        " $o x509 -req -in $n.csr -CA $ca.pem -CAkey $ca.key -CAcreateserial -out $n.pem -days 2 -extfile $ext; done";

static int make_certs(const char *dir) {
        if (access("/usr/bin/openssl", X_OK) != 0)
                return -ENOENT;
        char *argv[] = { "/bin/sh", "-c", (char *) tls_script, (char *) dir, NULL };
        char log[600];
        snprintf(log, sizeof(log), "%s/openssl.log", dir);
        pid_t pid = harness_spawn(argv, NULL, log, log);
        int status = -1;
        if (pid < 0 || harness_wait(pid, 30000, &status) < 0 || status != 0)
                return -EIO;
        return 0;
}

static int start(size_t n, bool tls, struct harness_etcd **ret) {
        char *bin = harness_etcd_bin();
        if (!bin)
                return -ENOENT;
        free(bin);
        if (n == 0 || n > HARNESS_ETCD_MAX)
                return -EINVAL;
        struct harness_etcd *e = calloc(1, sizeof(*e));
        if (!e || !(e->dir = harness_tmpdir())) {
                free(e);
                return -ENOMEM;
        }
        e->n = n;
        int r = 0;
        if (tls && (asprintf(&e->tls_dir, "%s/tls", e->dir) < 0 || mkdir(e->tls_dir, 0700) < 0 ||
                    (r = make_certs(e->tls_dir)) < 0)) {
                harness_etcd_free(e);
                return r < 0 ? r : -ENOMEM;
        }
        for (size_t i = 0; i < n; i++) {
                e->m[i].client_port = free_port();
                e->m[i].peer_port = free_port();
                snprintf(e->m[i].url, sizeof(e->m[i].url), "%s://127.0.0.1:%d", tls ? "https" : "http",
                         e->m[i].client_port);
                e->endpoints[i] = e->m[i].url;
        }
        for (size_t i = 0; i < n && r == 0; i++)
                r = spawn_member(e, i);
        if (r == 0 && !harness_etcd_ready(e))
                r = -ETIMEDOUT;
        if (r < 0) {
                harness_etcd_free(e);
                return r;
        }
        *ret = e;
        return 0;
}

int harness_etcd_start(size_t n, struct harness_etcd **ret) {
        return start(n, false, ret);
}

int harness_etcd_start_tls(struct harness_etcd **ret) {
        return start(1, true, ret);
}

int harness_etcd_signal(struct harness_etcd *e, size_t i, int sig) {
        if (i >= e->n || e->m[i].pid <= 0)
                return -ESRCH;
        if (sig != SIGKILL)
                return kill(e->m[i].pid, sig) < 0 ? -errno : 0;
        int r = harness_kill(e->m[i].pid, SIGKILL, 5000);
        e->m[i].pid = 0;
        return r < 0 ? r : 0;
}

int harness_etcd_restart(struct harness_etcd *e, size_t i) {
        if (i >= e->n || e->m[i].pid > 0)
                return -EINVAL;
        return spawn_member(e, i);
}

void harness_etcd_free(struct harness_etcd *e) {
        if (!e)
                return;
        for (size_t i = 0; i < e->n; i++)
                if (e->m[i].pid > 0)
                        harness_kill(e->m[i].pid, SIGKILL, 5000);
        harness_rmrf(e->dir);
        free(e->dir);
        free(e->tls_dir);
        free(e);
}

static void on_node_change(void *userdata) {
        ((struct harness_cluster_node *) userdata)->changes++;
}

int harness_cluster_node_start(struct harness_etcd *e, const char *prefix, int64_t ttl,
                               struct harness_cluster_node *x, size_t i) {
        *x = (struct harness_cluster_node) { 0 };
        snprintf(x->name, sizeof(x->name), "host-%c", (char) ('a' + i));
        if (uv_loop_init(&x->loop) < 0)
                return -ENOMEM;
        /* Requests time out well inside ttl/2 (see lib/cluster.h). */
        const struct etcd_options eo = { .endpoints = e->endpoints, .timeout_ms = ttl * 1000 / 3 };
        const struct cluster_options co = { .prefix = prefix, .name = x->name, .lease_ttl = ttl };
        int r = http_new(&x->loop, NULL, &x->http);
        if (r == 0)
                r = etcd_new(x->http, &eo, &x->etcd);
        if (r == 0)
                r = cluster_new(&x->loop, x->etcd, &co, on_node_change, x, &x->c);
        if (r == 0)
                r = cluster_start(x->c);
        return r;
}

int harness_cluster_nodes_start(struct harness_etcd *e, const char *prefix, int64_t ttl,
                                struct harness_cluster_node *nodes, size_t n) {
        for (size_t i = 0; i < n; i++) {
                int r = harness_cluster_node_start(e, prefix, ttl, &nodes[i], i);
                if (r < 0)
                        return r;
        }
        return 0;
}

void harness_cluster_node_stop(struct harness_cluster_node *x, bool abandon) {
        if (!x->http)
                return;
        if (abandon)
                cluster_abandon(x->c);
        else
                cluster_free(x->c);
        /* let the revoke go out */
        for (int i = 0; i < 50 && uv_run(&x->loop, UV_RUN_NOWAIT); i++)
                sleep_ms(10);
        etcd_free(x->etcd);
        http_free(x->http);
        uv_run(&x->loop, UV_RUN_DEFAULT);
        uv_loop_close(&x->loop);
        x->http = NULL;
}

void harness_cluster_run(struct harness_cluster_node *nodes, size_t n, unsigned mask, int ms) {
        uint64_t end = util_now_mono_ms() + (uint64_t) ms;
        while (util_now_mono_ms() < end) {
                for (size_t i = 0; i < n; i++)
                        if ((mask >> i & 1) && nodes[i].http)
                                uv_run(&nodes[i].loop, UV_RUN_NOWAIT);
                sleep_ms(2);
        }
}

int harness_cluster_active(struct harness_cluster_node *nodes, size_t n, size_t *count) {
        int idx = -1;
        *count = 0;
        for (size_t i = 0; i < n; i++)
                if (nodes[i].http && cluster_is_active(nodes[i].c)) {
                        idx = (int) i;
                        (*count)++;
                }
        return idx;
}

int harness_etcd_client_start(const char *who, struct harness_etcd **ret_cluster, uv_loop_t *loop,
                              struct http **ret_http, struct etcd **ret_etcd) {
        int r = harness_etcd_start(1, ret_cluster);
        if (r == -ENOENT) {
                fprintf(stderr, "%s: etcd is not installed (scripts/deps.sh installs etcd-server); skipping\n", who);
                return 0;
        }
        if (r < 0 || uv_loop_init(loop) < 0 || http_new(loop, NULL, ret_http) < 0)
                return -1;
        const struct etcd_options o = { .endpoints = (*ret_cluster)->endpoints };
        return etcd_new(*ret_http, &o, ret_etcd) < 0 ? -1 : 0;
}

void harness_etcd_client_stop(struct harness_etcd *cluster, uv_loop_t *loop, struct http *http,
                              struct etcd *etcd) {
        if (!cluster)
                return;
        etcd_free(etcd);
        http_free(http);
        uv_run(loop, UV_RUN_DEFAULT);
        uv_loop_close(loop);
        harness_etcd_free(cluster);
}
