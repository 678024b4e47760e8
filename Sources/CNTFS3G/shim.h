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

// AT_UNNAMED is an array of unknown size, which Swift does not import: hand out its address.
static inline ntfschar *imprint_ntfs_unnamed(void) { return AT_UNNAMED; }

// Enum constants built with endian macros, spelled out here so Swift sees plain values.
static inline ATTR_TYPES imprint_ntfs_at_data(void) { return AT_DATA; }

static inline int imprint_ntfs_is_directory(ntfs_inode *ni) {
    return (ni->mrec->flags & MFT_RECORD_IS_DIRECTORY) != 0;
}

static inline uint32_t imprint_ntfs_file_attributes(ntfs_inode *ni) { return (uint32_t)ni->flags; }

static inline ntfs_volume *imprint_ntfs_mount(const char *device) {
    return ntfs_mount(device, NTFS_MNT_NONE);
}

static inline int imprint_ntfs_umount(ntfs_volume *vol) { return ntfs_umount(vol, FALSE); }

#endif
