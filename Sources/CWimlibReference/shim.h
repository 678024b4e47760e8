#include <stddef.h>
#include <stdint.h>
#include <wimlib.h>
