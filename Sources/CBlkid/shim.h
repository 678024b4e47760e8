#ifndef IMPRINT_CBLKID_SHIM_H
#define IMPRINT_CBLKID_SHIM_H
#include <stdint.h>
#include <sys/types.h>
#include <blkid/blkid.h>
#endif
