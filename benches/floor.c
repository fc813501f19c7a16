/* The floor: the least work that gives leakwatch's picture of one process, in plain C.
 *
 *   floor PID POLLS ROUNDS netlink|tables|fds [SPACING_MS]
 *   floor exec POLLS ROUNDS CMD [ARG...]
 *
 * One poll: readlink every /proc/PID/fd entry (counting types, keeping socket inodes in a
 * hash set), the TCP states of those sockets from ONE unfiltered sock_diag dump
 * (AF_INET + AF_INET6, every state) or from /proc/PID/net/tcp{,6}, and
 * /proc/PID/{status,limits,cgroup} (`fds`: the fd scan alone). No allocation per entry. Prints one JSON line per
 * round, like benches/poll.rs. Built by benches/run.sh with gcc -O2.
 *
 * With SPACING_MS, it sleeps that long between polls (as a daemon ticking at that interval
 * would, its caches partly cold) and counts CPU and wall only around each poll.
 *
 * `exec` runs a command (e.g. `ss -tanp`) POLLS times per round, stdout to /dev/null, and
 * reports the children's own CPU and peak RSS from wait4(2): this process is small, so a
 * child's peak RSS is its own (Linux carries the pre-exec peak across execve).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SET_BITS 17 /* 131072 slots: enough for 20,000 sockets */
static uint64_t set[1 << SET_BITS];
static int states[16], nsockets, fds;

static void set_clear(void) { memset(set, 0, sizeof set); }
static void set_add(uint64_t ino) {
    uint32_t i = (uint32_t)(ino * 0x9E3779B97F4A7C15ull >> (64 - SET_BITS));
    while (set[i] && set[i] != ino) i = (i + 1) & ((1 << SET_BITS) - 1);
    set[i] = ino;
}
static int set_has(uint64_t ino) {
    uint32_t i = (uint32_t)(ino * 0x9E3779B97F4A7C15ull >> (64 - SET_BITS));
    while (set[i]) {
        if (set[i] == ino) return 1;
        i = (i + 1) & ((1 << SET_BITS) - 1);
    }
    return 0;
}

static void scan_fds(int pid) {
    char path[64], link[512];
    char buf[32768];
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0) return;
    long n;
    while ((n = syscall(SYS_getdents64, dfd, buf, sizeof buf)) > 0) {
        for (long off = 0; off < n;) {
            struct dirent64 *d = (struct dirent64 *)(buf + off);
            off += d->d_reclen;
            if (d->d_name[0] < '0' || d->d_name[0] > '9') continue;
            fds++;
            ssize_t l = readlinkat(dfd, d->d_name, link, sizeof link - 1);
            if (l > 8 && memcmp(link, "socket:[", 8) == 0) {
                link[l] = 0;
                set_add(strtoull(link + 8, NULL, 10));
                nsockets++;
            }
        }
    }
    close(dfd);
}

static void diag_dump(int family) {
    int s = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (s < 0) return;
    struct {
        struct nlmsghdr nlh;
        struct inet_diag_req_v2 r;
    } req = {
        .nlh = {.nlmsg_len = sizeof req, .nlmsg_type = SOCK_DIAG_BY_FAMILY,
                .nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP},
        .r = {.sdiag_family = family, .sdiag_protocol = IPPROTO_TCP, .idiag_states = ~0u},
    };
    if (send(s, &req, sizeof req, 0) < 0) goto out;
    static char buf[65536];
    for (;;) {
        ssize_t n = recv(s, buf, sizeof buf, 0);
        if (n <= 0) goto out;
        for (struct nlmsghdr *h = (struct nlmsghdr *)buf; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
            if (h->nlmsg_type == NLMSG_DONE || h->nlmsg_type == NLMSG_ERROR) goto out;
            struct inet_diag_msg *m = NLMSG_DATA(h);
            if (m->idiag_inode && set_has(m->idiag_inode)) states[m->idiag_state & 15]++;
        }
    }
out:
    close(s);
}

static void read_table(int pid, const char *name) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/net/%s", pid, name);
    FILE *f = fopen(path, "re");
    if (!f) return;
    static char line[512];
    if (!fgets(line, sizeof line, f)) goto out;
    while (fgets(line, sizeof line, f)) {
        unsigned st;
        unsigned long long ino;
        /* sl local rem st tx:rx tr:when retr uid timeout inode */
        if (sscanf(line, "%*s %*s %*s %x %*s %*s %*s %*s %*s %llu", &st, &ino) == 2 && ino &&
            set_has(ino))
            states[st & 15]++;
    }
out:
    fclose(f);
}

static void slurp(int pid, const char *name) {
    char path[64];
    static char buf[16384];
    snprintf(path, sizeof path, "/proc/%d/%s", pid, name);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return;
    while (read(fd, buf, sizeof buf) > 0) {
    }
    close(fd);
}

static double cpu_ms(long *maxrss) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    *maxrss = ru.ru_maxrss;
    return ru.ru_utime.tv_sec * 1e3 + ru.ru_utime.tv_usec / 1e3 + ru.ru_stime.tv_sec * 1e3 +
           ru.ru_stime.tv_usec / 1e3;
}

/* Peak RSS of this process (VmHWM): unlike ru_maxrss, it does not include what the parent
 * that forked us had resident before execve. */
static long vm_hwm_kib(void) {
    char buf[4096];
    int fd = open("/proc/self/status", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -1;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0) return -1;
    buf[n] = 0;
    char *p = strstr(buf, "VmHWM:");
    return p ? strtol(p + 6, NULL, 10) : -1;
}

static double now_ms(void);

static int run_command(int polls, int rounds, char **argv) {
    for (int r = 0; r < rounds; r++) {
        double cpu = 0, w0 = now_ms();
        long peak = 0;
        for (int i = 0; i < polls; i++) {
            pid_t pid = fork();
            if (pid < 0) return 1;
            if (pid == 0) {
                int null = open("/dev/null", O_WRONLY);
                dup2(null, 1);
                execvp(argv[0], argv);
                _exit(127);
            }
            int status;
            struct rusage ru;
            if (wait4(pid, &status, 0, &ru) < 0 || !WIFEXITED(status) || WEXITSTATUS(status))
                return 1;
            cpu += ru.ru_utime.tv_sec * 1e3 + ru.ru_utime.tv_usec / 1e3 +
                   ru.ru_stime.tv_sec * 1e3 + ru.ru_stime.tv_usec / 1e3;
            if (ru.ru_maxrss > peak) peak = ru.ru_maxrss;
        }
        printf("{\"tool\":\"%s\",\"cpu_ms\":%.4f,\"wall_ms\":%.4f,\"maxrss_kib\":%ld}\n", argv[0],
               cpu / polls, (now_ms() - w0) / polls, peak);
        fflush(stdout);
    }
    return 0;
}

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

static void poll_once(int pid, int netlink) {
    set_clear();
    memset(states, 0, sizeof states);
    nsockets = fds = 0;
    scan_fds(pid);
    if (netlink == 2) {
    } else if (netlink) {
        diag_dump(AF_INET);
        diag_dump(AF_INET6);
    } else {
        read_table(pid, "tcp");
        read_table(pid, "tcp6");
    }
    slurp(pid, "status");
    slurp(pid, "limits");
    slurp(pid, "cgroup");
}

static void sleep_ms(int ms) {
    struct timespec t = {.tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) < 0) {
    }
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: floor PID POLLS ROUNDS netlink|tables|fds [SPACING_MS]\n"
                        "       floor exec POLLS ROUNDS CMD [ARG...]\n");
        return 2;
    }
    if (strcmp(argv[1], "exec") == 0) return run_command(atoi(argv[2]), atoi(argv[3]), argv + 4);
    int pid = atoi(argv[1]), polls = atoi(argv[2]), rounds = atoi(argv[3]);
    int netlink = strcmp(argv[4], "netlink") == 0 ? 1 : strcmp(argv[4], "fds") == 0 ? 2 : 0;
    int spacing = argc > 5 ? atoi(argv[5]) : 0;
    poll_once(pid, netlink);
    for (int r = 0; r < rounds; r++) {
        long rss;
        double cpu = 0, wall = 0, c0 = cpu_ms(&rss), w0 = now_ms();
        if (spacing <= 0) {
            for (int i = 0; i < polls; i++) poll_once(pid, netlink);
            wall = now_ms() - w0;
            cpu = cpu_ms(&rss) - c0;
        } else {
            for (int i = 0; i < polls; i++) {
                sleep_ms(spacing);
                c0 = cpu_ms(&rss), w0 = now_ms();
                poll_once(pid, netlink);
                wall += now_ms() - w0;
                cpu += cpu_ms(&rss) - c0;
            }
        }
        rss = vm_hwm_kib();
        printf("{\"tool\":\"floor-%s\",\"cpu_ms\":%.4f,\"wall_ms\":%.4f,\"maxrss_kib\":%ld,"
               "\"fds\":%d,\"established\":%d,\"close_wait\":%d,\"spacing_ms\":%d}\n",
               argv[4], cpu / polls, wall / polls, rss, fds, states[1], states[8], spacing);
        fflush(stdout);
    }
    return 0;
}
