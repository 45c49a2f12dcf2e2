/* TLS glue: the only module that includes mbedTLS (termination comes with
 * the TLS issue; for now it reports the library version). */
#ifndef PORTICO_TLS_H
#define PORTICO_TLS_H

/* "3.6.x": the mbedTLS version built in. */
const char *tls_library_version(void);

#endif
