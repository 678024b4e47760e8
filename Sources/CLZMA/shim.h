#ifndef IMPRINT_CLZMA_SHIM_H
#define IMPRINT_CLZMA_SHIM_H
#include <stdint.h>
#include <stddef.h>
#include <lzma.h>

/* LZMA_CONCATENATED is a cast macro Swift does not import: decode concatenated .xz streams. */
static const uint32_t imprint_lzma_concatenated = LZMA_CONCATENATED;
#endif
