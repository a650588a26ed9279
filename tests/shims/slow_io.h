/* slow_io.h - preload tests/shims/slow_io.c into the processes a test spawns next (the child
 * inherits the environment; Criterion runs each test in its own process, so the change is
 * the test's own). The shim is built without sanitizers, so in an ASan build the runtime
 * need not come first for it: verify_asan_link_order=0 is appended to ASAN_OPTIONS. Set the
 * shim's TWIG_TEST_SLOW_* variables beside it, and call slow_io_unload once the process to
 * slow down has been spawned. */
#ifndef TWIG_TESTS_SLOW_IO_H
#define TWIG_TESTS_SLOW_IO_H

#include <stdio.h>
#include <stdlib.h>

#define SLOW_IO_SHIM TWIG_BIN_DIR "/tests/shims/libtwig_slow_io.so"

static inline void slow_io_preload(void)
{
    const char *asan = getenv("ASAN_OPTIONS");
    char opts[512];
    snprintf(opts, sizeof opts, "%s%sverify_asan_link_order=0", asan ? asan : "",
             asan ? ":" : "");
    setenv("ASAN_OPTIONS", opts, 1);
    setenv("LD_PRELOAD", SLOW_IO_SHIM, 1);
}

static inline void slow_io_unload(void)
{
    unsetenv("LD_PRELOAD");
}

#endif
