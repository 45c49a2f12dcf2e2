/* HTTP/1.1 parsing glue: the only module that includes llhttp. */
#ifndef PORTICO_HTTP1_H
#define PORTICO_HTTP1_H

/* "9.2.1": the llhttp version built in. */
const char *http1_library_version(void);

#endif
