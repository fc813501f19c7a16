/* The pod sandbox's process for the kubelet end-to-end tests (the "pause" container).
 *
 * It holds the pod's namespaces and does nothing else, except what PID 1 of a shared PID
 * namespace must do (the chart's pod sets shareProcessNamespace): reap every child that
 * is re-parented to it, so a restarted container's orphans never pile up as zombies. It
 * exits on SIGINT and SIGTERM, when the runtime stops the sandbox.
 *
 * Built here as a static binary: gcc -static -O2 -o pause pause.c
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static void on_stop(int sig)
{
    (void)sig;
    _exit(0);
}

static void on_child(int sig)
{
    int saved = errno;
    (void)sig;
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    errno = saved;
}

int main(void)
{
    struct sigaction stop = {.sa_handler = on_stop};
    struct sigaction child = {.sa_handler = on_child, .sa_flags = SA_NOCLDSTOP | SA_RESTART};

    if (sigaction(SIGINT, &stop, NULL) || sigaction(SIGTERM, &stop, NULL) ||
        sigaction(SIGCHLD, &child, NULL)) {
        fprintf(stderr, "pause: sigaction: %s\n", strerror(errno));
        return 1;
    }
    if (getpid() != 1)
        fprintf(stderr, "pause: not PID 1: only its own children are reaped\n");
    for (;;)
        pause();
}
