#ifndef IMPRINT_CSYSTEM_SHIM_H
#define IMPRINT_CSYSTEM_SHIM_H
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/xattr.h>
#include <unistd.h>

#ifndef SYS_openat2
#define SYS_openat2 437
#endif

/* struct open_how and the RESOLVE_* flags of openat2(2), spelled out so the shim builds
 * against older kernel headers too. */
struct imprint_open_how {
    uint64_t flags;
    uint64_t mode;
    uint64_t resolve;
};
#define IMPRINT_RESOLVE_NO_MAGICLINKS 0x02
#define IMPRINT_RESOLVE_NO_SYMLINKS 0x04
#define IMPRINT_RESOLVE_BENEATH 0x08

/* Opens `path` relative to `dirfd` so that no component may leave `dirfd` or be a symbolic
 * link: the kernel enforces what a path check in user space can only hope for. Returns the
 * new descriptor, or -1 with errno set (ENOSYS on kernels older than 5.6). */
static inline int imprint_open_beneath(int dirfd, const char *path, int flags, unsigned mode) {
    struct imprint_open_how how;
    memset(&how, 0, sizeof how);
    how.flags = (uint64_t)(unsigned)flags;
    how.mode = (flags & O_CREAT) ? mode : 0;
    how.resolve = IMPRINT_RESOLVE_BENEATH | IMPRINT_RESOLVE_NO_SYMLINKS | IMPRINT_RESOLVE_NO_MAGICLINKS;
    return (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

static inline int imprint_open_file(const char *path, int flags, unsigned mode) {
    return open(path, flags, mode);
}

static inline int imprint_openat(int dirfd, const char *path, int flags, unsigned mode) {
    return openat(dirfd, path, flags, mode);
}

static inline int imprint_errno(void) { return errno; }
#endif
