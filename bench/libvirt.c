/*
 * libvirt's own lock table, for lockspace's benchmark: virLockSpaceAcquireResource +
 * virLockSpaceReleaseResource of an existing resource file (the syscalls of a cycle are open +
 * F_SETLK + close, as in floor.c, plus libvirt's hash table, owner array and mutex).
 * Built by bench/libvirt.ts with `cc -O2` at run time.
 *
 * libvirt.so.0 exports its util functions under the LIBVIRT_PRIVATE version, with no header
 * installed for them, so they are loaded with dlopen and their prototypes are declared here.
 *
 * usage: libvirt ITERATIONS DIR
 * Prints the mean nanoseconds per cycle on stdout; exits with MISSING when libvirt.so.0 or one of
 * its lockspace functions cannot be loaded (the bench then skips this baseline).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

enum { MISSING = 3 };

typedef struct virLockSpace virLockSpace;

static struct {
    int (*initialize)(void);
    const char *(*last_error)(void);
    virLockSpace *(*create)(const char *directory);
    void (*destroy)(virLockSpace *lockspace);
    int (*acquire)(virLockSpace *lockspace, const char *name, pid_t owner, unsigned int flags);
    int (*release)(virLockSpace *lockspace, const char *name, pid_t owner);
} lv;

static void *symbol(void *lib, const char *name) {
    void *fn = dlsym(lib, name);
    if (!fn) {
        fprintf(stderr, "libvirt: %s not exported by libvirt.so.0\n", name);
        exit(MISSING);
    }
    return fn;
}

static void load(void) {
    void *lib = dlopen("libvirt.so.0", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        fprintf(stderr, "libvirt: %s\n", dlerror());
        exit(MISSING);
    }
    *(void **)&lv.initialize = symbol(lib, "virInitialize");
    *(void **)&lv.last_error = symbol(lib, "virGetLastErrorMessage");
    *(void **)&lv.create = symbol(lib, "virLockSpaceNew");
    *(void **)&lv.destroy = symbol(lib, "virLockSpaceFree");
    *(void **)&lv.acquire = symbol(lib, "virLockSpaceAcquireResource");
    *(void **)&lv.release = symbol(lib, "virLockSpaceReleaseResource");
}

static void check(int rc, const char *what) {
    if (rc < 0) {
        fprintf(stderr, "libvirt: %s: %s\n", what, lv.last_error());
        exit(1);
    }
}

static long long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: libvirt ITERATIONS DIR\n");
        return 2;
    }
    long iterations = strtol(argv[1], NULL, 10);
    if (iterations <= 0) return 2;
    load();
    check(lv.initialize(), "virInitialize");

    virLockSpace *lockspace = lv.create(argv[2]);
    if (!lockspace) check(-1, "virLockSpaceNew");
    const char *name = "libvirt-cycle";
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", argv[2], name);
    int fd = open(path, O_CREAT | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        perror(path);
        return 1;
    }
    close(fd);
    pid_t owner = getpid();

    long long start = now_ns();
    for (long i = 0; i < iterations; i++) {
        check(lv.acquire(lockspace, name, owner, 0), "virLockSpaceAcquireResource");
        check(lv.release(lockspace, name, owner), "virLockSpaceReleaseResource");
    }
    long long elapsed = now_ns() - start;

    lv.destroy(lockspace);
    printf("%.1f\n", (double)elapsed / (double)iterations);
    return 0;
}
