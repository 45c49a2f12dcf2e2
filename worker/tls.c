/* mbedTLS glue. Only this file includes mbedTLS headers. */
#include "worker/tls.h"

#include <mbedtls/version.h>

const char *tls_library_version(void)
{
    return MBEDTLS_VERSION_STRING;
}
