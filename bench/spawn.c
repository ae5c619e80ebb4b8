/* SPDX-License-Identifier: MIT */
/*
 * bench-spawn: runs a command and prints its wall time and wait4() rusage
 * as one JSON line on stdout:
 *
 *   bench-spawn OUT_FILE COMMAND [ARGS...]
 *   -> {"exit":0,"wall":1.234,"utime":0.1,"stime":0.02,"maxrss_kib":12345}
 *
 * Why a C helper: ru_maxrss is the high-water mark of the process, and
 * the kernel folds in the memory of what the process was before exec().
 * A child forked (or vforked) by the Python driver starts out as a copy of
 * the driver with its tens of MiB of scenario data, so its ru_maxrss would
 * measure the driver.  Forked from this small program, the child starts
 * at about 1 MiB and ru_maxrss is partnerd's own peak.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double) ts.tv_sec + (double) ts.tv_nsec / 1e9;
}

static double tv(struct timeval t) {
        return (double) t.tv_sec + (double) t.tv_usec / 1e6;
}

int main(int argc, char **argv) {
        struct rusage ru;
        int status, code;
        pid_t pid;
        double t0, wall;
        FILE *out;

        if (argc < 3) {
                fprintf(stderr, "usage: bench-spawn OUT_FILE COMMAND [ARGS...]\n");
                return 2;
        }
        t0 = now();
        pid = fork();
        if (pid < 0) {
                perror("bench-spawn: fork");
                return 1;
        }
        if (pid == 0) {
                execvp(argv[2], argv + 2);
                fprintf(stderr, "bench-spawn: cannot run %s: %s\n", argv[2], strerror(errno));
                _exit(127);
        }
        while (wait4(pid, &status, 0, &ru) < 0)
                if (errno != EINTR) {
                        perror("bench-spawn: wait4");
                        return 1;
                }
        wall = now() - t0;
        code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        out = fopen(argv[1], "w");
        if (!out) {
                perror("bench-spawn: output file");
                return 1;
        }
        fprintf(out, "{\"exit\":%d,\"wall\":%.6f,\"utime\":%.6f,\"stime\":%.6f,\"maxrss_kib\":%ld}\n",
                code, wall, tv(ru.ru_utime), tv(ru.ru_stime), ru.ru_maxrss);
        return fclose(out) == 0 ? 0 : 1;
}
