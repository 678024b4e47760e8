#ifndef IMPRINT_CNTFS3G_SHIM_H
#define IMPRINT_CNTFS3G_SHIM_H

// The ntfs-3g headers use va_list, struct stat and struct timespec without including what
// declares them: these must come first.
#include <stdarg.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/stat.h>
#include <time.h>

#include <ntfs-3g/types.h>
#include <ntfs-3g/layout.h>
#include <ntfs-3g/volume.h>
#include <ntfs-3g/inode.h>
#include <ntfs-3g/attrib.h>
#include <ntfs-3g/dir.h>
#include <ntfs-3g/security.h>
#include <ntfs-3g/reparse.h>
#include <ntfs-3g/object_id.h>
#include <ntfs-3g/device.h>
#include <ntfs-3g/index.h>
#include <fcntl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

// AT_UNNAMED is an array of unknown size, which Swift does not import: hand out its address.
static inline ntfschar *imprint_ntfs_unnamed(void) { return AT_UNNAMED; }

// Enum constants built with endian macros, spelled out here so Swift sees plain values.
static inline ATTR_TYPES imprint_ntfs_at_data(void) { return AT_DATA; }

static inline int imprint_ntfs_is_directory(ntfs_inode *ni) {
    return (ni->mrec->flags & MFT_RECORD_IS_DIRECTORY) != 0;
}

static inline uint32_t imprint_ntfs_file_attributes(ntfs_inode *ni) { return (uint32_t)ni->flags; }

/* The size of the unnamed data of a plain file: one name, no reparse point, not compressed,
 * encrypted or sparse, and no named data stream. -1 for anything else: only such a file can be
 * kept by comparing its data with one blob of the image. */
static inline int64_t imprint_ntfs_plain_file_size(ntfs_inode *ni) {
    if ((ni->mrec->flags & MFT_RECORD_IS_DIRECTORY) || le16_to_cpu(ni->mrec->link_count) != 1) return -1;
    if (ni->flags & (FILE_ATTR_REPARSE_POINT | FILE_ATTR_COMPRESSED | FILE_ATTR_ENCRYPTED | FILE_ATTR_SPARSE_FILE)) return -1;
    ntfs_attr_search_ctx *ctx = ntfs_attr_get_search_ctx(ni, NULL);
    if (!ctx) return -1;
    int64_t size = -1;
    int plain = 1;
    /* AT_UNUSED walks every attribute of the file in turn. */
    while (ntfs_attr_lookup(AT_UNUSED, NULL, 0, CASE_SENSITIVE, 0, NULL, 0, ctx) == 0) {
        ATTR_RECORD *a = ctx->attr;
        if (a->type != AT_DATA) continue;
        if (a->name_length != 0 || (a->flags & (ATTR_IS_COMPRESSED | ATTR_IS_ENCRYPTED | ATTR_IS_SPARSE))) { plain = 0; break; }
        if (a->non_resident) {
            if (a->lowest_vcn == 0) size = sle64_to_cpu(a->data_size);
        } else {
            size = le32_to_cpu(a->value_length);
        }
    }
    ntfs_attr_put_search_ctx(ctx);
    return plain ? size : -1;
}

static inline ntfs_volume *imprint_ntfs_mount(const char *device) {
    return ntfs_mount(device, NTFS_MNT_NONE);
}

static inline int imprint_ntfs_umount(ntfs_volume *vol) { return ntfs_umount(vol, FALSE); }

/* Read-only: nothing on the volume changes, not even the journal's state at mount. */
static inline ntfs_volume *imprint_ntfs_mount_readonly(const char *device) {
    return ntfs_mount(device, NTFS_MNT_RDONLY);
}

/* Everything libntfs-3g wrote so far reaches the disk (fsync of its device): what a power cut
 * must not undo, such as a refresh's record before the first folder moves. */
static inline int imprint_ntfs_sync(ntfs_volume *vol) {
    if (!vol || !vol->dev || !vol->dev->d_ops || !vol->dev->d_ops->sync) { errno = EINVAL; return -1; }
    return vol->dev->d_ops->sync(vol->dev);
}

/* Removes the name `name` from directory `dir_ni`'s index where its entry points to an MFT
 * record that is not in use: libntfs-3g writes no journal, so a run killed after adding a new
 * file's index entry but before writing its MFT record leaves such an entry, which no inode
 * can be opened for (ENOENT) and ntfs_delete cannot remove. The key is the entry's FILE_NAME
 * attribute; $I30 collates by the name alone, so the name and its length are what is needed. */
static inline int imprint_ntfs_remove_dangling_name(ntfs_inode *dir_ni, const ntfschar *name, u8 length) {
    if (!dir_ni || !name || length == 0) { errno = EINVAL; return -1; }
    size_t size = sizeof(FILE_NAME_ATTR) + (size_t)length * sizeof(ntfschar);
    FILE_NAME_ATTR *key = calloc(1, size);
    if (!key) { errno = ENOMEM; return -1; }
    key->parent_directory = MK_LE_MREF(dir_ni->mft_no, le16_to_cpu(dir_ni->mrec->sequence_number));
    key->file_name_length = length;
    key->file_name_type = FILE_NAME_POSIX;
    memcpy(key->file_name, name, (size_t)length * sizeof(ntfschar));
    int rc = ntfs_index_remove(dir_ni, dir_ni, key, (int)size);
    free(key);
    return rc;
}

/* A byte range of an open file or disk as an ntfs-3g device, so an NTFS volume inside a
 * partition can be read where the kernel shows no device for that partition (and without
 * creating one): libntfs-3g only ever calls these operations. The caller keeps `fd` open until
 * ntfs_umount returns and closes it afterwards. */
struct imprint_ntfs_region {
    int fd; int64_t start; int64_t size; int64_t position;
    /* When mirror_length > 0, reads of [mirror, mirror + mirror_length) return the bytes at
     * [mft, ...) instead: the volume seen as if $MFTMirr equalled $MFT's first records. */
    int64_t mirror; int64_t mft; int64_t mirror_length;
};

static inline struct imprint_ntfs_region *imprint_ntfs_region_of(struct ntfs_device *dev) {
    return (struct imprint_ntfs_region *)dev->d_private;
}
static inline int imprint_ntfs_region_open(struct ntfs_device *dev, int flags) {
    if ((flags & O_ACCMODE) == O_RDONLY) NDevSetReadOnly(dev);
    NDevSetOpen(dev);
    return 0;
}
static inline int imprint_ntfs_region_close(struct ntfs_device *dev) {
    NDevClearOpen(dev);
    free(dev->d_private);
    dev->d_private = NULL;
    return 0;
}
static inline s64 imprint_ntfs_region_seek(struct ntfs_device *dev, s64 offset, int whence) {
    struct imprint_ntfs_region *r = imprint_ntfs_region_of(dev);
    s64 base = whence == SEEK_SET ? 0 : whence == SEEK_CUR ? r->position : r->size;
    if (base + offset < 0) { errno = EINVAL; return -1; }
    r->position = base + offset;
    return r->position;
}
static inline s64 imprint_ntfs_region_pread(struct ntfs_device *dev, void *buf, s64 count, s64 offset) {
    struct imprint_ntfs_region *r = imprint_ntfs_region_of(dev);
    if (offset < 0) { errno = EINVAL; return -1; }
    if (offset >= r->size) return 0;
    if (count > r->size - offset) count = r->size - offset;
    s64 n = pread(r->fd, buf, (size_t)count, (off_t)(r->start + offset));
    if (n > 0 && r->mirror_length > 0) {
        int64_t from = offset > r->mirror ? offset : r->mirror;
        int64_t to = offset + n < r->mirror + r->mirror_length ? offset + n : r->mirror + r->mirror_length;
        if (from < to) {
            s64 got = pread(r->fd, (char *)buf + (from - offset), (size_t)(to - from), (off_t)(r->start + r->mft + (from - r->mirror)));
            if (got != to - from) { if (got >= 0) errno = EIO; return -1; }
        }
    }
    return n;
}
static inline s64 imprint_ntfs_region_pwrite(struct ntfs_device *dev, const void *buf, s64 count, s64 offset) {
    struct imprint_ntfs_region *r = imprint_ntfs_region_of(dev);
    if (NDevReadOnly(dev)) { errno = EROFS; return -1; }
    if (offset < 0 || offset + count > r->size) { errno = ENOSPC; return -1; }
    NDevSetDirty(dev);
    return pwrite(r->fd, buf, (size_t)count, (off_t)(r->start + offset));
}
static inline s64 imprint_ntfs_region_read(struct ntfs_device *dev, void *buf, s64 count) {
    struct imprint_ntfs_region *r = imprint_ntfs_region_of(dev);
    s64 n = imprint_ntfs_region_pread(dev, buf, count, r->position);
    if (n > 0) r->position += n;
    return n;
}
static inline s64 imprint_ntfs_region_write(struct ntfs_device *dev, const void *buf, s64 count) {
    struct imprint_ntfs_region *r = imprint_ntfs_region_of(dev);
    s64 n = imprint_ntfs_region_pwrite(dev, buf, count, r->position);
    if (n > 0) r->position += n;
    return n;
}
static inline int imprint_ntfs_region_sync(struct ntfs_device *dev) {
    if (NDevReadOnly(dev)) return 0;
    NDevClearDirty(dev);
    return fsync(imprint_ntfs_region_of(dev)->fd);
}
static inline int imprint_ntfs_region_stat(struct ntfs_device *dev, struct stat *buf) {
    /* A regular file of the region's size: libntfs-3g then asks nothing of a block device. */
    memset(buf, 0, sizeof *buf);
    buf->st_mode = S_IFREG | 0600;
    buf->st_size = (off_t)imprint_ntfs_region_of(dev)->size;
    return 0;
}
static inline int imprint_ntfs_region_ioctl(struct ntfs_device *dev, unsigned long request, void *argp) {
    (void)dev; (void)request; (void)argp;
    errno = ENOTTY;
    return -1;
}

static inline struct ntfs_device_operations *imprint_ntfs_region_operations(void) {
    static struct ntfs_device_operations operations = {
        .open = imprint_ntfs_region_open, .close = imprint_ntfs_region_close,
        .seek = imprint_ntfs_region_seek, .read = imprint_ntfs_region_read,
        .write = imprint_ntfs_region_write, .pread = imprint_ntfs_region_pread,
        .pwrite = imprint_ntfs_region_pwrite, .sync = imprint_ntfs_region_sync,
        .stat = imprint_ntfs_region_stat, .ioctl = imprint_ntfs_region_ioctl,
    };
    return &operations;
}

/* Mounts the region (taken over: freed with the device) as an ntfs-3g device; NULL with errno. */
static inline ntfs_volume *imprint_ntfs_mount_region_device(const char *name, struct imprint_ntfs_region *region, unsigned long flags) {
    struct ntfs_device *dev = ntfs_device_alloc(name, 0, imprint_ntfs_region_operations(), region);
    if (!dev) { free(region); return NULL; }
    ntfs_volume *vol = ntfs_device_mount(dev, flags);
    if (!vol) {
        int saved = errno;
        if (dev->d_private) free(dev->d_private);
        ntfs_device_free(dev);
        errno = saved;
    }
    return vol;
}

/* Read-only, the NTFS volume at bytes [start, start + size) of `fd` seen as if its $MFTMirr
 * equalled the first records of $MFT: libntfs-3g refuses (EIO) a volume where they differ,
 * which a power cut between a record's write and its copy's leaves, and a run resuming after
 * one must still read its state there. Nothing is written. Offsets from the boot sector:
 * bytes per sector (11), sectors per cluster (13; above 0x80, a power of two below), $MFT's and
 * $MFTMirr's first clusters (0x30, 0x38), clusters per MFT record (0x40; negative: 2^-n bytes). */
static inline ntfs_volume *imprint_ntfs_mount_region_mirror_from_mft(const char *name, int fd, int64_t start, int64_t size) {
    uint8_t boot[512];
    if (pread(fd, boot, sizeof boot, (off_t)start) != (ssize_t)sizeof boot) { errno = EIO; return NULL; }
    int64_t sector = boot[11] | boot[12] << 8;
    int64_t per_cluster = boot[13] <= 0x80 ? boot[13] : (int64_t)1 << (256 - boot[13]);
    int64_t cluster = sector * per_cluster;
    int8_t per_record = (int8_t)boot[0x40];
    int64_t record = per_record < 0 ? (int64_t)1 << -per_record : per_record * cluster;
    uint64_t mft_lcn = 0, mirror_lcn = 0;
    for (int i = 7; i >= 0; i--) { mft_lcn = mft_lcn << 8 | boot[0x30 + i]; mirror_lcn = mirror_lcn << 8 | boot[0x38 + i]; }
    if (sector < 256 || cluster <= 0 || record <= 0 || record > 65536 || mft_lcn == 0 || mirror_lcn == 0
        || mft_lcn > (uint64_t)(size / cluster) || mirror_lcn > (uint64_t)(size / cluster)) { errno = EINVAL; return NULL; }
    struct imprint_ntfs_region *region = calloc(1, sizeof *region);
    if (!region) { errno = ENOMEM; return NULL; }
    region->fd = fd; region->start = start; region->size = size;
    region->mft = (int64_t)mft_lcn * cluster; region->mirror = (int64_t)mirror_lcn * cluster;
    region->mirror_length = cluster > 4 * record ? cluster : 4 * record;
    return imprint_ntfs_mount_region_device(name, region, NTFS_MNT_RDONLY);
}

/* Mounts the NTFS volume found at bytes [start, start + size) of `fd`; NULL with errno set
 * when there is none or it cannot be read. `name` only appears in libntfs-3g's messages.
 * Read-only, a volume refused with EIO is tried once more through the view above, in which
 * $MFTMirr equals $MFT's first records: what a cut between a record's two writes leaves apart
 * must not hide a volume from a look that changes nothing. */
static inline ntfs_volume *imprint_ntfs_mount_region(const char *name, int fd, int64_t start, int64_t size, int readOnly) {
    struct imprint_ntfs_region *region = calloc(1, sizeof *region);
    if (!region) { errno = ENOMEM; return NULL; }
    region->fd = fd; region->start = start; region->size = size;
    ntfs_volume *vol = imprint_ntfs_mount_region_device(name, region, readOnly ? NTFS_MNT_RDONLY : NTFS_MNT_NONE);
    if (!vol && readOnly && errno == EIO) {
        vol = imprint_ntfs_mount_region_mirror_from_mft(name, fd, start, size);
        if (!vol) errno = EIO;
    }
    return vol;
}


/* ---- Capture: reading a volume's files as wimlib's NTFS capture keeps them. ---- */

/* The file attributes Windows shows: $STANDARD_INFORMATION's flags, with DIRECTORY set from
 * the MFT record (NTFS keeps it there, not in the flags) and the index-presence bits ntfs-3g
 * adds (0x10000000 $I30, 0x20000000 view index) taken out. */
static inline uint32_t imprint_ntfs_windows_attributes(ntfs_inode *ni) {
    uint32_t attributes = (uint32_t)le32_to_cpu(ni->flags) & ~(uint32_t)0x30000000;
    if (ni->mrec->flags & MFT_RECORD_IS_DIRECTORY) attributes |= 0x10;
    return attributes;
}

/* The three FILETIMEs of $STANDARD_INFORMATION (NTFS keeps them in FILETIME units). */
static inline void imprint_ntfs_times(ntfs_inode *ni, uint64_t *creation, uint64_t *last_write, uint64_t *last_access) {
    *creation = (uint64_t)sle64_to_cpu(ni->creation_time);
    *last_write = (uint64_t)sle64_to_cpu(ni->last_data_change_time);
    *last_access = (uint64_t)sle64_to_cpu(ni->last_access_time);
}

static inline uint64_t imprint_ntfs_mft_number(ntfs_inode *ni) { return (uint64_t)ni->mft_no; }
static inline uint64_t imprint_ntfs_mref_number(uint64_t mref) { return (uint64_t)MREF(mref); }

/* The self-relative security descriptor of a file (from $Secure or a legacy attribute):
 * copied when `size` suffices; returns the size it needs, or <= 0 when it has none. */
static inline int imprint_ntfs_security_descriptor(ntfs_volume *vol, ntfs_inode *ni, char *buffer, size_t size) {
    struct SECURITY_CONTEXT context;
    memset(&context, 0, sizeof context);
    context.vol = vol;
    return ntfs_get_ntfs_acl(&context, ni, buffer, size);
}

/* The value of the file's reparse point attribute (kind 0), malloc'd (the caller frees it),
 * or NULL when it has none. Kind 1: its object ID as Windows reports it (and wimlib stores
 * it), 64 bytes: the ID, then the birth volume, birth object and domain IDs, zero where the
 * attribute holds only the ID. */
static inline void *imprint_ntfs_read_small_attribute(ntfs_inode *ni, int kind, int64_t *size) {
    *size = 0;
    if (kind == 1) {
        /* ntfs_get_ntfs_object_id gives 16 bytes where the attribute holds only the ID. */
        int length = ntfs_get_ntfs_object_id(ni, NULL, 0);
        if (length <= 0 || length > 64) return NULL;
        char *value = calloc(1, 64);
        if (!value) return NULL;
        if (ntfs_get_ntfs_object_id(ni, value, (size_t)length) != length) { free(value); return NULL; }
        *size = 64;
        return value;
    }
    s64 length = 0;
    void *value = ntfs_attr_readall(ni, AT_REPARSE_POINT, AT_UNNAMED, 0, &length);
    *size = value ? (int64_t)length : 0;
    return value;
}

/* The file's DOS (8.3) name in directory `dir_ni`, as UTF-8 into `value` (not terminated):
 * its length, or <= 0 when it has none. */
static inline int imprint_ntfs_dos_name(ntfs_inode *ni, ntfs_inode *dir_ni, char *value, size_t size) {
    return ntfs_get_ntfs_dos_name(ni, dir_ni, value, size);
}

/* One $DATA attribute (stream) of a file: its name (UTF-16LE units, none for the unnamed
 * stream), size, and the first cluster on disk it occupies (-1 when resident or all sparse),
 * by which a capture orders its reads so that a disk is read from start to end. */
struct imprint_ntfs_stream {
    ntfschar name[255];
    int name_length;
    int64_t size;
    int64_t first_lcn;
    uint16_t flags;
};

/* Fills up to `max` streams of the file; returns how many it has (more than `max` means the
 * caller asks again with room for all), or -1 with errno. */
static inline int imprint_ntfs_list_streams(ntfs_inode *ni, struct imprint_ntfs_stream *out, int max) {
    ntfs_attr_search_ctx *ctx = ntfs_attr_get_search_ctx(ni, NULL);
    if (!ctx) return -1;
    int count = 0;
    /* AT_UNUSED walks every attribute of the file in turn. */
    while (ntfs_attr_lookup(AT_UNUSED, NULL, 0, CASE_SENSITIVE, 0, NULL, 0, ctx) == 0) {
        ATTR_RECORD *a = ctx->attr;
        if (a->type != AT_DATA) continue;
        /* An attribute spread over several records appears once per record: the first counts. */
        if (a->non_resident && sle64_to_cpu(a->lowest_vcn) != 0) continue;
        if (count < max) {
            struct imprint_ntfs_stream *s = &out[count];
            s->name_length = a->name_length;
            memcpy(s->name, (const char *)a + le16_to_cpu(a->name_offset), (size_t)a->name_length * sizeof(ntfschar));
            s->flags = le16_to_cpu(a->flags);
            s->first_lcn = -1;
            if (a->non_resident) {
                s->size = sle64_to_cpu(a->data_size);
                runlist_element *runs = ntfs_mapping_pairs_decompress(ni->vol, a, NULL);
                if (runs) {
                    for (runlist_element *r = runs; r->length != 0; r++) {
                        if (r->lcn >= 0) { s->first_lcn = r->lcn; break; }
                    }
                    free(runs);
                }
            } else {
                s->size = le32_to_cpu(a->value_length);
            }
        }
        count++;
    }
    int saved = errno;
    ntfs_attr_put_search_ctx(ctx);
    if (saved != ENOENT) { errno = saved; return -1; }
    return count;
}

static inline int imprint_ntfs_first_user_record(void) { return FILE_first_user; }

static inline const char *imprint_ntfs_volume_name(ntfs_volume *vol) { return vol->vol_name; }

#endif
