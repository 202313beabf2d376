/*
 * hack/bench-syscalls.c — syscall-heavy loop for hack/bench (seccomp overhead).
 *
 * Build: gcc -static -O2 -o bench-syscalls hack/bench-syscalls.c
 * Usage: bench-syscalls [ITERATIONS]   (default 100000)
 *
 * One iteration = getppid() + read(1 byte of /dev/zero) + open("/dev/null")
 * + close() + futex(FUTEX_WAKE_PRIVATE) on a word nobody waits on: five
 * syscalls. Timed with clock_gettime(CLOCK_MONOTONIC) (vDSO, not a syscall).
 * Prints one line of key=value pairs, ns per iteration for the mix and ns
 * per call for each syscall on its own (ITERATIONS calls each), and last
 * open+close of /dev/zero instead of /dev/null (a control: see hack/bench):
 *   mix_ns=... getppid_ns=... read_ns=... openclose_ns=... futex_ns=...
 *   zeroopenclose_ns=...
 * Raw syscall(2) is used so libc caching can't skip the kernel.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <linux/futex.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static uint32_t futex_word;

static inline uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static inline void do_getppid(void) { syscall(SYS_getppid); }

static inline void do_read(int zero)
{
    char c;
    if (syscall(SYS_read, zero, &c, 1) != 1)
        die("read /dev/zero");
}

static inline void do_openclose_path(const char *path)
{
    long fd = syscall(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        die(path);
    syscall(SYS_close, fd);
}

static inline void do_openclose(void) { do_openclose_path("/dev/null"); }

static inline void do_futex(void)
{
    if (syscall(SYS_futex, &futex_word, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0) < 0)
        die("futex");
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100000;
    if (n <= 0)
        n = 100000;
    int zero = open("/dev/zero", O_RDONLY | O_CLOEXEC);
    if (zero < 0)
        die("open /dev/zero");

    /* Warm-up: page in code, dentries, the seccomp cache. */
    for (long i = 0; i < n / 10 + 1; i++) {
        do_getppid();
        do_read(zero);
        do_openclose();
        do_futex();
    }

    uint64_t t0 = now_ns();
    for (long i = 0; i < n; i++) {
        do_getppid();
        do_read(zero);
        do_openclose();
        do_futex();
    }
    uint64_t t1 = now_ns();
    for (long i = 0; i < n; i++)
        do_getppid();
    uint64_t t2 = now_ns();
    for (long i = 0; i < n; i++)
        do_read(zero);
    uint64_t t3 = now_ns();
    for (long i = 0; i < n; i++)
        do_openclose();
    uint64_t t4 = now_ns();
    for (long i = 0; i < n; i++)
        do_futex();
    uint64_t t5 = now_ns();
    for (long i = 0; i < n; i++)
        do_openclose_path("/dev/zero");
    uint64_t t6 = now_ns();

    printf("mix_ns=%.1f getppid_ns=%.1f read_ns=%.1f openclose_ns=%.1f futex_ns=%.1f "
           "zeroopenclose_ns=%.1f\n",
           (double)(t1 - t0) / n, (double)(t2 - t1) / n, (double)(t3 - t2) / n,
           (double)(t4 - t3) / n, (double)(t5 - t4) / n, (double)(t6 - t5) / n);
    return 0;
}
