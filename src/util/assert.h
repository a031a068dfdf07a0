/* util/assert.h — invariants stated in the code.
 *
 * PARLEY_ASSERT(cond) documents something the code relies on and that only a bug can
 * break (misuse of an API from inside the library, index arithmetic). In Debug and
 * sanitizer builds (PARLEY_ASSERTS, set by CMake) a false condition prints where and
 * aborts, so the test suites stop at the first broken invariant; in release builds it
 * compiles to nothing, and the code around it still handles the case without crashing
 * where it can. Never put side effects inside. Input from the network is never checked
 * with it: bad input is an error path, not a broken invariant. */
#ifndef PARLEY_UTIL_ASSERT_H
#define PARLEY_UTIL_ASSERT_H

#ifdef PARLEY_ASSERTS
#include <stdio.h>
#include <stdlib.h>
#define PARLEY_ASSERT(cond)                                                                        \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "%s:%d: %s: assertion failed: %s\n", __FILE__, __LINE__, __func__,     \
                    #cond);                                                                        \
            abort();                                                                               \
        }                                                                                          \
    } while (0)
#else
#define PARLEY_ASSERT(cond) ((void)sizeof(cond))
#endif

#endif
