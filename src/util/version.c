/* util/version.c — the library's version at run time (parley/parley.h). */
#include "parley/parley.h"

const char *parley_version(void) {
    return PARLEY_VERSION_STRING;
}
