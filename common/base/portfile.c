/* portfile.c - port files written atomically (see portfile.h) */
#include "common/base/portfile.h"

#include <stdio.h>

#include "common/base/atomic_file.h"

int portfile_write(const char *path, int port)
{
    char text[16];
    int n = snprintf(text, sizeof text, "%d\n", port);
    return atomic_file_write(path, text, (size_t)n);
}
