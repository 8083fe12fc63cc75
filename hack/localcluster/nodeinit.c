/*
 * The last step of a container's start on the simulated node, run inside the sandbox
 * as root: close the descriptor it was executed from, take the container's groups,
 * gid and uid, drop every capability of a non-root user, then exec the program.
 *
 * Why a static program passed as a descriptor: the container's root file system is
 * its image's, which need not hold setpriv (or anything); executing /proc/self/fd/N
 * leaves nothing of the host visible inside, as runc's init does.
 *
 * usage: nodeinit FD UID GID GROUPS|- -- PROGRAM ARGS...
 */
#define _GNU_SOURCE
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define MAX_GROUPS 64

static unsigned long number(const char *s, const char *what) {
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || *s == '\0' || *end != '\0') {
        fprintf(stderr, "nodeinit: bad %s: %s\n", what, s);
        exit(127);
    }
    return v;
}

int main(int argc, char **argv) {
    if (argc < 7 || strcmp(argv[5], "--") != 0) {
        fprintf(stderr, "usage: nodeinit FD UID GID GROUPS|- -- PROGRAM ARGS...\n");
        return 127;
    }
    int fd = (int)number(argv[1], "fd");
    uid_t uid = (uid_t)number(argv[2], "uid");
    gid_t gid = (gid_t)number(argv[3], "gid");
    gid_t groups[MAX_GROUPS];
    size_t n = 0;
    if (strcmp(argv[4], "-") != 0) {
        char *list = argv[4], *save = NULL;
        for (char *g = strtok_r(list, ",", &save); g && n < MAX_GROUPS; g = strtok_r(NULL, ",", &save))
            groups[n++] = (gid_t)number(g, "group");
    }
    close(fd);
    if (setgroups(n, groups) != 0 || setresgid(gid, gid, gid) != 0) {
        perror("nodeinit: groups");
        return 127;
    }
    if (uid != 0) {
        for (int cap = 0; cap <= 63; cap++)
            prctl(PR_CAPBSET_DROP, cap, 0, 0, 0);
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    }
    if (setresuid(uid, uid, uid) != 0) {
        perror("nodeinit: uid");
        return 127;
    }
    if (uid != 0) {
        struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
        struct __user_cap_data_struct d[2];
        memset(d, 0, sizeof d);
        if (syscall(SYS_capset, &h, d) != 0) {
            perror("nodeinit: capset");
            return 127;
        }
    }
    execvp(argv[6], argv + 6);
    fprintf(stderr, "exec %s: %s\n", argv[6], strerror(errno));
    return errno == ENOENT ? 127 : 126;
}
