#include <stddef.h>
#include <stdint.h>
#include <hivex.h>
