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
 * open+close of /dev/zero instead of /dev/null (a control: see hack/bench);
 * each figure is the median of 20 interleaved blocks (see main):
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

/* The timed work is cut into BLOCKS blocks per kind, run round-robin
 * (mix, getppid, read, open+close /dev/null, futex, open+close /dev/zero,
 * then the next block of each), and each figure is the median over its
 * blocks of ns per iteration. On a quiet machine that is the mean; on a
 * busy one a block the scheduler preempted lands in the tail instead of
 * in the figure, and a slow spell hits every kind alike. */
#define KINDS 6
#define BLOCKS 20

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void run_block(int kind, long n, int zero)
{
    for (long i = 0; i < n; i++) {
        switch (kind) {
        case 0:
            do_getppid();
            do_read(zero);
            do_openclose();
            do_futex();
            break;
        case 1: do_getppid(); break;
        case 2: do_read(zero); break;
        case 3: do_openclose(); break;
        case 4: do_futex(); break;
        default: do_openclose_path("/dev/zero"); break;
        }
    }
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100000;
    if (n <= 0)
        n = 100000;
    long per_block = n / BLOCKS > 0 ? n / BLOCKS : 1;
    int zero = open("/dev/zero", O_RDONLY | O_CLOEXEC);
    if (zero < 0)
        die("open /dev/zero");

    /* Warm-up: page in code, dentries, the seccomp cache. */
    run_block(0, n / 10 + 1, zero);

    static double ns[KINDS][BLOCKS];
    for (int b = 0; b < BLOCKS; b++) {
        for (int k = 0; k < KINDS; k++) {
            uint64_t t0 = now_ns();
            run_block(k, per_block, zero);
            ns[k][b] = (double)(now_ns() - t0) / per_block;
        }
    }
    double med[KINDS];
    for (int k = 0; k < KINDS; k++) {
        qsort(ns[k], BLOCKS, sizeof ns[k][0], cmp_double);
        med[k] = (ns[k][BLOCKS / 2 - 1] + ns[k][BLOCKS / 2]) / 2;
    }

    printf("mix_ns=%.1f getppid_ns=%.1f read_ns=%.1f openclose_ns=%.1f futex_ns=%.1f "
           "zeroopenclose_ns=%.1f\n",
           med[0], med[1], med[2], med[3], med[4], med[5]);
    return 0;
}
