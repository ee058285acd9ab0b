/*
 * The C floor for lockspace's benchmark: the raw syscalls each lockspace case costs at least.
 * Built by bench/floor.ts with `cc -O2` at run time.
 *
 * usage: floor MODE ITERATIONS DIR
 *   open-lock-close  open(O_RDWR|O_CLOEXEC) + fcntl(F_SETLK, F_WRLCK, byte 0 len 1) + close, existing file
 *   lock-unlock      fcntl(F_SETLK) F_WRLCK then F_UNLCK on one already open fd
 *   reacquire        fcntl(F_SETLK, F_WRLCK) + fstatat(path) inode re-check + fcntl(F_SETLK, F_UNLCK)
 *                    on one already open fd: the syscalls of lockspace's cycle on a file it keeps open
 *   autocreate       open(O_CREAT|O_RDWR|O_CLOEXEC|O_NOFOLLOW, 0600) + fstat + fcntl(F_SETLK, F_WRLCK)
 *                    + fstatat(path) inode re-check + unlink + close
 * Prints the mean nanoseconds per cycle on stdout.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static void die(const char *what, const char *path) {
    fprintf(stderr, "floor: %s '%s': %s\n", what, path, strerror(errno));
    exit(1);
}

static void set_lock(int fd, short type, const char *path) {
    struct flock fl;
    memset(&fl, 0, sizeof fl);
    fl.l_type = type;
    fl.l_whence = SEEK_SET;
    fl.l_start = 0;
    fl.l_len = 1;
    if (fcntl(fd, F_SETLK, &fl) < 0) die("fcntl", path);
}

static void open_lock_close(const char *path) {
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0) die("open", path);
    set_lock(fd, F_WRLCK, path);
    close(fd);
}

static void autocreate(const char *path) {
    struct stat by_fd, by_path;
    int fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) die("open", path);
    if (fstat(fd, &by_fd) < 0) die("fstat", path);
    set_lock(fd, F_WRLCK, path);
    if (fstatat(AT_FDCWD, path, &by_path, AT_SYMLINK_NOFOLLOW) < 0) die("fstatat", path);
    if (by_fd.st_ino != by_path.st_ino || by_fd.st_dev != by_path.st_dev) die("inode changed", path);
    if (unlink(path) < 0) die("unlink", path);
    close(fd);
}

static int create_file(const char *path) {
    int fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) die("create", path);
    return fd;
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: floor open-lock-close|lock-unlock|reacquire|autocreate ITERATIONS DIR\n");
        return 2;
    }
    const char *mode = argv[1];
    long iterations = strtol(argv[2], NULL, 10);
    char path[4096];
    snprintf(path, sizeof path, "%s/floor-%s", argv[3], mode);
    if (iterations <= 0) return 2;

    int held_fd = -1;
    if (strcmp(mode, "autocreate") != 0) held_fd = create_file(path);

    long long start = now_ns();
    if (strcmp(mode, "open-lock-close") == 0) {
        for (long i = 0; i < iterations; i++) open_lock_close(path);
    } else if (strcmp(mode, "lock-unlock") == 0) {
        for (long i = 0; i < iterations; i++) {
            set_lock(held_fd, F_WRLCK, path);
            set_lock(held_fd, F_UNLCK, path);
        }
    } else if (strcmp(mode, "reacquire") == 0) {
        struct stat by_fd, by_path;
        if (fstat(held_fd, &by_fd) < 0) die("fstat", path);
        for (long i = 0; i < iterations; i++) {
            set_lock(held_fd, F_WRLCK, path);
            if (fstatat(AT_FDCWD, path, &by_path, AT_SYMLINK_NOFOLLOW) < 0) die("fstatat", path);
            if (by_fd.st_ino != by_path.st_ino || by_fd.st_dev != by_path.st_dev) die("inode changed", path);
            set_lock(held_fd, F_UNLCK, path);
        }
    } else if (strcmp(mode, "autocreate") == 0) {
        for (long i = 0; i < iterations; i++) autocreate(path);
    } else {
        fprintf(stderr, "floor: unknown mode %s\n", mode);
        return 2;
    }
    long long elapsed = now_ns() - start;

    printf("%.1f\n", (double)elapsed / (double)iterations);
    return 0;
}
