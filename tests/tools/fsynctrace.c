/* SPDX-License-Identifier: MIT */
/*
 * fsynctrace.so: an LD_PRELOAD shim that records the durability calls of a
 * process, for tests/integration/test_durability.c.  With FSYNC_TRACE=FILE
 * in the environment every call below appends one line to FILE (O_APPEND,
 * one write() per line, so lines of several processes do not mix):
 *
 *   open PATH                      open/openat with O_CREAT
 *   fsync PATH SIZE                fsync(fd); PATH from /proc/self/fd,
 *   fdatasync PATH SIZE            SIZE the file's size (-1: a directory)
 *   syncfs PATH
 *   rename OLD NEW                 rename/renameat/renameat2 (paths as given,
 *                                  made absolute with the cwd when relative)
 *   unlink PATH
 *
 * Writes are not recorded one by one (stdio writes do not go through an
 * interposable write()); the size at fsync time says the data was there.
 * Each call is passed on to the real one unchanged.  Without FSYNC_TRACE
 * the shim records nothing.
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define REAL(name) ((__typeof__(&name)) real_fn(#name))

static void *real_fn(const char *name) {
        return dlsym(RTLD_NEXT, name);
}

static void emit(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void emit(const char *fmt, ...) {
        const char *path = getenv("FSYNC_TRACE");
        char line[3 * PATH_MAX];
        int saved = errno, fd, n;
        va_list ap;

        if (!path || !*path)
                return;
        va_start(ap, fmt);
        n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
        va_end(ap);
        if (n < 0)
                goto out;
        if ((size_t) n > sizeof(line) - 2)
                n = (int) sizeof(line) - 2;
        line[n++] = '\n';
        fd = REAL(open)(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
        if (fd >= 0) {
                (void) !write(fd, line, (size_t) n);
                close(fd);
        }
out:
        errno = saved;
}

/* An absolute form of path relative to dirfd (AT_FDCWD: the cwd). */
static const char *absolute(int dirfd, const char *path, char *buf, size_t n) {
        char base[PATH_MAX], link[64];
        ssize_t k;

        if (!path || path[0] == '/')
                return path ? path : "?";
        if (dirfd == AT_FDCWD) {
                if (!getcwd(base, sizeof(base)))
                        return path;
        } else {
                snprintf(link, sizeof(link), "/proc/self/fd/%d", dirfd);
                k = readlink(link, base, sizeof(base) - 1);
                if (k < 0)
                        return path;
                base[k] = '\0';
        }
        snprintf(buf, n, "%s/%s", base, path);
        return buf;
}

static const char *fd_path(int fd, char *buf, size_t n) {
        char link[64];
        snprintf(link, sizeof(link), "/proc/self/fd/%d", fd);
        ssize_t k = readlink(link, buf, n - 1);
        if (k < 0)
                return "?";
        buf[k] = '\0';
        return buf;
}

static long long fd_size(int fd) {
        struct stat st;
        if (fstat(fd, &st) < 0)
                return -2;
        return S_ISDIR(st.st_mode) ? -1 : (long long) st.st_size;
}

static void record_fd(const char *what, int fd) {
        char buf[PATH_MAX];
        emit("%s %s %lld", what, fd_path(fd, buf, sizeof(buf)), fd_size(fd));
}

static void record_open(int dirfd, const char *path, int flags) {
        char buf[2 * PATH_MAX];
        if (flags & O_CREAT)
                emit("open %s", absolute(dirfd, path, buf, sizeof(buf)));
}

static mode_t mode_arg(int flags, va_list ap) {
        return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t) va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...) {
        va_list ap;
        va_start(ap, flags);
        mode_t mode = mode_arg(flags, ap);
        va_end(ap);
        record_open(AT_FDCWD, path, flags);
        return REAL(open)(path, flags, mode);
}

int open64(const char *path, int flags, ...) {
        va_list ap;
        va_start(ap, flags);
        mode_t mode = mode_arg(flags, ap);
        va_end(ap);
        record_open(AT_FDCWD, path, flags);
        return REAL(open64)(path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...) {
        va_list ap;
        va_start(ap, flags);
        mode_t mode = mode_arg(flags, ap);
        va_end(ap);
        record_open(dirfd, path, flags);
        return REAL(openat)(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) {
        va_list ap;
        va_start(ap, flags);
        mode_t mode = mode_arg(flags, ap);
        va_end(ap);
        record_open(dirfd, path, flags);
        return REAL(openat64)(dirfd, path, flags, mode);
}

int fsync(int fd) {
        int r = REAL(fsync)(fd);
        if (r == 0)
                record_fd("fsync", fd);
        return r;
}

int fdatasync(int fd) {
        int r = REAL(fdatasync)(fd);
        if (r == 0)
                record_fd("fdatasync", fd);
        return r;
}

int syncfs(int fd) {
        char buf[PATH_MAX];
        int r = REAL(syncfs)(fd);
        if (r == 0)
                emit("syncfs %s", fd_path(fd, buf, sizeof(buf)));
        return r;
}

static void record_rename(int olddirfd, const char *old, int newdirfd, const char *new_) {
        char a[2 * PATH_MAX], b[2 * PATH_MAX];
        emit("rename %s %s", absolute(olddirfd, old, a, sizeof(a)), absolute(newdirfd, new_, b, sizeof(b)));
}

int rename(const char *old, const char *new_) {
        int r = REAL(rename)(old, new_);
        if (r == 0)
                record_rename(AT_FDCWD, old, AT_FDCWD, new_);
        return r;
}

int renameat(int olddirfd, const char *old, int newdirfd, const char *new_) {
        int r = REAL(renameat)(olddirfd, old, newdirfd, new_);
        if (r == 0)
                record_rename(olddirfd, old, newdirfd, new_);
        return r;
}

int renameat2(int olddirfd, const char *old, int newdirfd, const char *new_, unsigned flags) {
        int r = REAL(renameat2)(olddirfd, old, newdirfd, new_, flags);
        if (r == 0)
                record_rename(olddirfd, old, newdirfd, new_);
        return r;
}

int unlink(const char *path) {
        char buf[2 * PATH_MAX];
        int r = REAL(unlink)(path);
        if (r == 0)
                emit("unlink %s", absolute(AT_FDCWD, path, buf, sizeof(buf)));
        return r;
}
