/* SPDX-License-Identifier: MIT */
/*
 * bench-cluster-daemons: the cluster mode with real partnerd daemons
 * (tests/harness/pdcluster.h): two daemons on a three-member etcd on
 * loopback, the fake platform and the SMTP server.
 *
 *  1. Takeover: the active daemon is SIGKILLed; the time until the other
 *     one says STATUS=active is measured; the killed one is restarted and
 *     the next round waits until it says standby.  KILLS rounds: median and
 *     worst, against the contract's bound lease_ttl + one campaign interval
 *     (lease_ttl/3).
 *  2. Overhead: the gRPC calls etcd served (grpc_server_started_total of
 *     every member's /metrics; the JSON gateway forwards each request as
 *     one call) over WINDOW seconds, per poll cycle of the active daemon,
 *     with no blocked order and with CUSTOMERS blocked customers.
 *
 * Usage: bench-cluster-daemons [KILLS [LEASE_TTL [CUSTOMERS [WINDOW]]]]
 * (default 20, 3, 50, 60).  Exit 77 without etcd.  Needs PARTNERD_BIN,
 * FAKEPLATFORM_BIN, TEST_SRCDIR (as `make bench` sets them).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "invariants.h"
#include "pdcluster.h"
#include "util.h"

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

/* Sum of grpc_server_started_total over the running members. */
static double etcd_calls(struct harness_pdc *c) {
        double sum = 0;
        for (size_t m = 0; m < c->etcd->n; m++) {
                char url[128], *body = NULL, *save = NULL;
                long status = 0;
                snprintf(url, sizeof(url), "%s/metrics", c->etcd->m[m].url);
                if (harness_http_get(url, &status, &body) < 0 || status != 200) {
                        free(body);
                        continue;
                }
                for (char *l = strtok_r(body, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
                        if (strncmp(l, "grpc_server_started_total{", 26) == 0) {
                                const char *v = strrchr(l, ' ');
                                sum += v ? strtod(v + 1, NULL) : 0;
                        }
                free(body);
        }
        return sum;
}

static json_t *scenario(size_t n) {
        struct inv_customer *cust = calloc(n ? n : 1, sizeof(*cust));
        char (*names)[3][64] = calloc(n ? n : 1, sizeof(*names));
        if (!cust || !names)
                exit(1);
        for (size_t i = 0; i < n; i++) {
                snprintf(names[i][0], 64, "Bench %zu Ltd", i);
                snprintf(names[i][1], 64, "bench-%zu.onmicrosoft.com", i);
                snprintf(names[i][2], 64, "%08zx-2222-4000-8000-000000000001", i + 1);
                cust[i] = (struct inv_customer) { .name = names[i][0], .domain = names[i][1],
                                                  .tenant_id = names[i][2], .n_querying = 1 };
        }
        json_t *sc = inv_scenario_new(cust, n, 4001);
        free(cust);
        free(names);   /* inv_scenario_new copies the strings */
        return sc;
}

static int start(struct harness_pdc *c, size_t customers, int ttl) {
        json_t *sc = scenario(customers);
        const char *fake_args[] = { "--latency-ms", "5", NULL };
        int r = sc ? harness_pdc_setup(c, 2, 3, sc, fake_args, NULL, ttl) : -ENOMEM;
        json_decref(sc);
        for (size_t i = 0; r == 0 && i < 2; i++)
                r = harness_pdc_spawn(c, i);
        return r;
}

static int takeover(size_t kills, int ttl) {
        struct harness_pdc c;
        uint64_t *t = calloc(kills, sizeof(*t));
        int r = start(&c, 2, ttl), limit = (ttl + ttl / 3) * 5000 + 10000;
        size_t done = 0;
        if (r == -ENOENT) {
                harness_pdc_teardown(&c);
                free(t);
                return r;
        }
        for (; r == 0 && done < kills; done++) {
                int a = harness_pdc_wait_one_active(&c, 3, limit);
                if (a < 0) {
                        r = a;
                        break;
                }
                uint64_t t0 = util_now_mono_ms();
                harness_pdc_signal(&c, (size_t) a, SIGKILL);
                int b = harness_pdc_wait_one_active(&c, 1u << (1 - a), limit);
                t[done] = util_now_mono_ms() - t0;
                if (b < 0 || (r = harness_pdc_spawn(&c, (size_t) a)) < 0) {
                        r = b < 0 ? b : r;
                        break;
                }
                fprintf(stderr, "bench-cluster-daemons: kill %zu: %llu ms\n", done + 1, (unsigned long long) t[done]);
        }
        if (done) {
                qsort(t, done, sizeof(*t), cmp_u64);
                size_t over = 0;
                for (size_t i = 0; i < done; i++)
                        over += t[i] > (uint64_t) (ttl + ttl / 3) * 1000;
                printf("cluster takeover, real daemons (lease_ttl %d s, %zu SIGKILLs of the active one): median %llu ms, "
                       "worst %llu ms, best %llu ms; bound lease_ttl + lease_ttl/3 = %d ms, exceeded %zu times\n",
                       ttl, done, (unsigned long long) t[done / 2], (unsigned long long) t[done - 1],
                       (unsigned long long) t[0], (ttl + ttl / 3) * 1000, over);
        }
        harness_pdc_teardown(&c);
        free(t);
        return r;
}

static int overhead(size_t customers, int ttl, int window, double *ret_per_min, double *ret_cycles_per_min) {
        struct harness_pdc c;
        int r = start(&c, customers, ttl);
        if (r == 0) {
                int a = harness_pdc_wait_one_active(&c, 3, 60000);
                if (a < 0)
                        r = a;
                /* past the first cycles (cold writes) */
                while (r == 0 && harness_pdc_cycles(&c, (size_t) a) < 2)
                        harness_pdc_poll(&c, 200);
                if (r == 0) {
                        size_t cy0 = harness_pdc_cycles(&c, (size_t) a);
                        double n0 = etcd_calls(&c);
                        harness_pdc_poll(&c, window * 1000);
                        double n1 = etcd_calls(&c);
                        size_t cy = harness_pdc_cycles(&c, (size_t) a) - cy0;
                        printf("cluster etcd calls, %zu blocked customer(s), lease_ttl %d s, two daemons: %.0f in %d s "
                               "(%.0f/min), %zu cycles: %.1f per cycle (leadership of both daemons included)\n",
                               customers, ttl, n1 - n0, window, (n1 - n0) * 60.0 / window, cy,
                               cy ? (n1 - n0) / (double) cy : 0.0);
                        *ret_per_min = (n1 - n0) * 60.0 / window;
                        *ret_cycles_per_min = (double) cy * 60.0 / window;
                }
        }
        harness_pdc_teardown(&c);
        return r;
}

int main(int argc, char **argv) {
        size_t kills = argc > 1 ? strtoul(argv[1], NULL, 10) : 20;
        int ttl = argc > 2 ? atoi(argv[2]) : 3;
        size_t customers = argc > 3 ? strtoul(argv[3], NULL, 10) : 50;
        int window = argc > 4 ? atoi(argv[4]) : 60;
        char *bin = harness_etcd_bin();
        if (!bin) {
                fprintf(stderr, "bench-cluster-daemons: etcd is not installed; skipped\n");
                return 77;
        }
        free(bin);
        int r = takeover(kills, ttl);
        double idle = 0, busy = 0, cy_idle = 0, cy_busy = 0;
        if (r == 0)
                r = overhead(0, ttl, window, &idle, &cy_idle);
        if (r == 0)
                r = overhead(customers, ttl, window, &busy, &cy_busy);
        if (r == 0 && cy_busy > 0)
                printf("cluster etcd calls a cycle adds with %zu blocked customers over an idle cycle: %.1f "
                       "(%.0f/min against %.0f/min)\n", customers, (busy - idle) / cy_busy, busy, idle);
        if (r < 0)
                fprintf(stderr, "bench-cluster-daemons: failed: %s\n", strerror(-r));
        return r == -ENOENT ? 77 : r < 0;
}
