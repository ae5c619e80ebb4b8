/* SPDX-License-Identifier: MIT */
/*
 * partnerd — emails customers' admins the Microsoft reseller relationship
 * request of blocked Marketplace orders, and processes the orders once the
 * relationship is accepted.  See partnerd(8).
 */
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>

#include "config.h"
#include "daemon.h"
#include "log.h"
#include "secret.h"

static void usage(FILE *f) {
        fprintf(f,
                "Usage: partnerd [OPTIONS]\n"
                "       partnerd [--config PATH] status [--json]\n"
                "       partnerd [--config PATH] templates [--dump DIR]\n"
                "       partnerd [--config PATH] cluster migrate\n"
                "\n"
                "Emails the Microsoft reseller relationship request of blocked Marketplace\n"
                "orders to the customer's admins and processes the orders once accepted.\n"
                "\n"
                "  -c, --config PATH     configuration file (default " CFG_DEFAULT_PATH ")\n"
                "      --once            run one full cycle, then exit (1 if it failed)\n"
                "  -n, --dry-run         decide everything, send no mail, call no Process,\n"
                "                        write no state; print the mails instead\n"
                "      --check-config    validate the configuration and templates, then exit\n"
                "      --send-test-mail  send a test message to the configured recipients\n"
                "  -v, --verbose         log debug messages too\n"
                "      --json            with status: print JSON\n"
                "      --dump DIR        with templates: write the built-in templates to DIR\n"
                "                        (existing files are kept)\n"
                "  -h, --help            show this help\n"
                "      --version         show the version\n"
                "\n"
                "Exit status: 0 ok, 1 failure, 2 usage, 75 state directory in use,\n"
                "78 configuration error.\n");
}

int main(int argc, char **argv) {
        enum { OPT_ONCE = 0x100, OPT_CHECK, OPT_TESTMAIL, OPT_VERSION, OPT_JSON, OPT_DUMP };
        static const struct option longopts[] = {
                { "config", required_argument, NULL, 'c' },
                { "once", no_argument, NULL, OPT_ONCE },
                { "dry-run", no_argument, NULL, 'n' },
                { "check-config", no_argument, NULL, OPT_CHECK },
                { "send-test-mail", no_argument, NULL, OPT_TESTMAIL },
                { "verbose", no_argument, NULL, 'v' },
                { "json", no_argument, NULL, OPT_JSON },
                { "dump", required_argument, NULL, OPT_DUMP },
                { "help", no_argument, NULL, 'h' },
                { "version", no_argument, NULL, OPT_VERSION },
                { NULL, 0, NULL, 0 },
        };
        struct options opts = { .config_path = CFG_DEFAULT_PATH };
        int c;

        while ((c = getopt_long(argc, argv, "c:nvh", longopts, NULL)) != -1) {
                switch (c) {
                case 'c': opts.config_path = optarg; break;
                case OPT_ONCE: opts.once = true; break;
                case 'n': opts.dry_run = true; break;
                case OPT_CHECK: opts.check_config = true; break;
                case OPT_TESTMAIL: opts.send_test_mail = true; break;
                case 'v': opts.verbose = true; break;
                case OPT_JSON: opts.json = true; break;
                case OPT_DUMP: opts.dump_dir = optarg; break;
                case 'h': usage(stdout); return 0;
                case OPT_VERSION: printf("partnerd %s\n", PARTNERD_VERSION); return 0;
                default: usage(stderr); return EXIT_USAGE;
                }
        }
        if (optind < argc) {
                if (optind + 1 == argc && strcmp(argv[optind], "status") == 0)
                        opts.status = true;
                else if (optind + 1 == argc && strcmp(argv[optind], "templates") == 0)
                        opts.templates = true;
                else if (optind + 2 == argc && strcmp(argv[optind], "cluster") == 0 &&
                         strcmp(argv[optind + 1], "migrate") == 0)
                        opts.migrate = true;
                else {
                        fprintf(stderr, "partnerd: unknown command '%s' (try --help)\n", argv[optind]);
                        return EXIT_USAGE;
                }
        }
        if (opts.json && !opts.status) {
                fprintf(stderr, "partnerd: --json goes with the status command\n");
                return EXIT_USAGE;
        }
        if (opts.dump_dir && !opts.templates) {
                fprintf(stderr, "partnerd: --dump goes with the templates command\n");
                return EXIT_USAGE;
        }
        if (opts.status + opts.templates + opts.migrate + opts.check_config + opts.send_test_mail > 1) {
                fprintf(stderr, "partnerd: status, templates, cluster migrate, --check-config and --send-test-mail exclude each other\n");
                return EXIT_USAGE;
        }

        /* Secrets live in this process: no core dump, no ptrace by other
         * processes of the same user, /proc/PID/environ and mem root's. */
        (void) prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
        log_init(LOG_TARGET_AUTO);
        log_set_max_level(opts.verbose ? LOG_DEBUG : LOG_INFO);
        signal(SIGPIPE, SIG_IGN);

        int r;
        if (opts.check_config)
                r = command_check_config(&opts);
        else if (opts.status)
                r = command_status(&opts);
        else if (opts.templates)
                r = command_templates(&opts);
        else if (opts.send_test_mail)
                r = command_send_test_mail(&opts);
        else if (opts.migrate)
                r = command_cluster_migrate(&opts);
        else
                r = service_run(&opts);
        secret_forget_all();
        return r;
}
