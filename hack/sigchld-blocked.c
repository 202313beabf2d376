/*
 * hack/sigchld-blocked.c — run a command with SIGCHLD blocked:
 *
 *     sigchld-blocked COMMAND [ARGS...]
 *
 * hack/bench runs `youki run` through it. youki 0.7.0's `run` blocks its
 * signals and waits for SIGCHLD only after libcontainer's start has
 * returned (crates/youki/src/commands/run.rs, handle_foreground); a
 * container process that exits before that (/bin/true often does) sends a
 * SIGCHLD the kernel discards (default disposition, not blocked), and
 * `youki run` then waits in sigtimedwait for ever beside its zombie init.
 * A blocked SIGCHLD stays pending instead (the signal mask survives exec),
 * so youki's sigwait sees it and reaps its init. hack/bench measures both
 * ways and reports how many runs of each hung.
 *
 * The container's process inherits the blocked SIGCHLD too (libcontainer
 * does not reset the mask); /bin/true does not care.
 */
#include <signal.h>
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv) {
    sigset_t set;

    if (argc < 2) {
        fputs("usage: sigchld-blocked COMMAND [ARGS...]\n", stderr);
        return 2;
    }
    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    if (sigprocmask(SIG_BLOCK, &set, NULL) != 0) {
        perror("sigchld-blocked: sigprocmask");
        return 126;
    }
    execvp(argv[1], argv + 1);
    perror(argv[1]);
    return 127;
}
