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

#ifndef SYS_copy_file_range
#define SYS_copy_file_range 326
#endif

/* copy_file_range(2) through its system call (glibc declares it only with _GNU_SOURCE): the
 * kernel copies, with no round trip through user space. */
static inline long imprint_copy_file_range(int in, int out, size_t length) {
    return syscall(SYS_copy_file_range, in, (void *)0, out, (void *)0, length, 0u);
}

/* FICLONE (linux/fs.h): `out` becomes a copy of `in` that shares its blocks (a reflink), on
 * filesystems that can (XFS, btrfs); EOPNOTSUPP or EXDEV elsewhere. */
#include <sys/ioctl.h>
#ifndef FICLONE
#define FICLONE _IOW(0x94, 9, int)
#endif
static inline int imprint_clone_file(int in, int out) {
    return ioctl(out, FICLONE, in);
}

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

/* O_PATH is a GNU extension Glibc's Swift module does not show: a descriptor that names a folder
 * for *at() calls without the right to read it. */
#ifndef O_PATH
#define O_PATH 010000000
#endif
static const int imprint_o_path = O_PATH;

static inline int imprint_open_file(const char *path, int flags, unsigned mode) {
    return open(path, flags, mode);
}

static inline int imprint_openat(int dirfd, const char *path, int flags, unsigned mode) {
    return openat(dirfd, path, flags, mode);
}

static inline int imprint_errno(void) { return errno; }

#include <sys/reboot.h>
/* Restarts or powers off the machine (the boot environment, after its last event is sent). */
static inline int imprint_reboot(int power_off) { return reboot(power_off ? RB_POWER_OFF : RB_AUTOBOOT); }

/* Block-device and loop-device ioctls: their request numbers are function-like macros, which
 * Swift does not import. Each returns 0 (or a value) on success, -1 with errno set. */
#include <sys/ioctl.h>
#include <linux/fs.h>
#include <linux/blkpg.h>
#include <linux/loop.h>
#include <stdio.h>

static inline int imprint_block_size64(int fd, uint64_t *bytes) { return ioctl(fd, BLKGETSIZE64, bytes); }
static inline int imprint_block_logical_sector_size(int fd, int *size) { return ioctl(fd, BLKSSZGET, size); }
static inline int imprint_block_reread_partitions(int fd) { return ioctl(fd, BLKRRPART, 0); }
static inline int imprint_block_flush(int fd) { return ioctl(fd, BLKFLSBUF, 0); }

static inline int imprint_blkpg(int fd, int op, int number, int64_t start, int64_t length) {
    struct blkpg_partition partition;
    memset(&partition, 0, sizeof partition);
    partition.start = start;
    partition.length = length;
    partition.pno = number;
    struct blkpg_ioctl_arg arg;
    memset(&arg, 0, sizeof arg);
    arg.op = op;
    arg.datalen = sizeof partition;
    arg.data = &partition;
    return ioctl(fd, BLKPG, &arg);
}
/* Tells the kernel about one partition (byte offset and length), as partx --add does. */
static inline int imprint_blkpg_add(int fd, int number, int64_t start, int64_t length) {
    return imprint_blkpg(fd, BLKPG_ADD_PARTITION, number, start, length);
}
static inline int imprint_blkpg_delete(int fd, int number) { return imprint_blkpg(fd, BLKPG_DEL_PARTITION, number, 0, 0); }

/* Attaches a free loop device to bytes [offset, offset + size) of `backing_fd`, as
 * `losetup -o OFFSET --sizelimit SIZE` does. Returns the loop device's number. */
static inline int imprint_loop_attach(int backing_fd, uint64_t offset, uint64_t size, int read_only, char *path, size_t path_size) {
    int control = open("/dev/loop-control", O_RDWR | O_CLOEXEC);
    if (control < 0) return -1;
    for (int attempt = 0; attempt < 16; attempt++) {
        int number = ioctl(control, LOOP_CTL_GET_FREE);
        if (number < 0) { int saved = errno; close(control); errno = saved; return -1; }
        snprintf(path, path_size, "/dev/loop%d", number);
        int loop = open(path, (read_only ? O_RDONLY : O_RDWR) | O_CLOEXEC);
        if (loop < 0) { int saved = errno; close(control); errno = saved; return -1; }
        struct loop_config config;
        memset(&config, 0, sizeof config);
        config.fd = (uint32_t)backing_fd;
        config.info.lo_offset = offset;
        config.info.lo_sizelimit = size;
        config.info.lo_flags = read_only ? LO_FLAGS_READ_ONLY : 0;
        int rc = ioctl(loop, LOOP_CONFIGURE, &config);
        int saved = errno;
        close(loop);
        /* Another process took the same free device between the two calls: try the next. */
        if (rc < 0 && saved == EBUSY) continue;
        close(control);
        errno = saved;
        return rc < 0 ? -1 : number;
    }
    close(control);
    errno = EBUSY;
    return -1;
}

static inline int imprint_loop_detach(const char *path) {
    int loop = open(path, O_RDONLY | O_CLOEXEC);
    if (loop < 0) return -1;
    int rc = ioctl(loop, LOOP_CLR_FD, 0);
    int saved = errno;
    close(loop);
    errno = saved;
    return rc;
}
#endif
