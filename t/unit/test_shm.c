/* Shared memory: create, count, sum over slots, clear a slot, attach by fd
 * (as a worker or an upgraded master would), and refuse foreign regions. */
#include "t/unit/tap.h"
#include "common/shm.h"
#include "common/ticket_keys.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

static void test_counts(struct shm *s)
{
    is_int(shm_server_active(s, 7), 0, "fresh region counts nothing");
    shm_conn_inc(s, 0, 7);
    shm_conn_inc(s, 0, 7);
    shm_conn_inc(s, 3, 7);
    shm_conn_inc(s, SHM_MAX_ROWS - 1, 7);
    shm_conn_inc(s, 1, 8);
    is_int(shm_server_active(s, 7), 4, "server 7 summed over slots 0, 3 and the last");
    is_int(shm_server_active(s, 8), 1, "server 8 counted apart");
    shm_conn_dec(s, 0, 7);
    is_int(shm_server_active(s, 7), 3, "dec takes one away");
    shm_conn_dec(s, 5, 7);
    is_int(shm_server_active(s, 7), 3, "dec on an empty slot does not underflow");
    is_int(s->conns[5 * SHM_MAX_SERVERS + 7], 0, "the empty cell stays 0");
    shm_conn_inc(s, SHM_MAX_ROWS, 7);
    shm_conn_inc(s, 0, SHM_MAX_SERVERS);
    is_int(shm_server_active(s, 7), 3, "out-of-range slot is ignored");
    is_int(shm_server_active(s, SHM_MAX_SERVERS), 0, "out-of-range id reads 0");
    shm_slot_clear(s, 0);
    is_int(shm_server_active(s, 7), 2, "clearing slot 0 forgets its row only");
    is_int(shm_server_active(s, 8), 1, "other servers untouched");
}

static void test_attach(struct shm *s)
{
    struct shm a = {.fd = -1};
    int fd = dup(s->fd);
    is_int(shm_attach(&a, fd), 0, "attach an inherited fd");
    is_int(shm_server_active(&a, 7), 2, "attached view sees the counts");
    shm_conn_inc(&a, 9, 7);
    is_int(shm_server_active(s, 7), 3, "and writes through to the creator");
    is_int(a.hdr->max_rows, SHM_MAX_ROWS, "header max_rows");
    is_int(a.hdr->conns_off % 4096, 0, "rows start on a page");
    shm_detach(&a);
    is_int(a.fd, -1, "detach closes");
    is_int(fcntl(s->fd, F_GETFD) & FD_CLOEXEC, 0, "fd survives exec (binary upgrade)");
}

/* On success the shm owns the fd it was given, hence the dup. */
static int attach_errno(int fd)
{
    struct shm a = {.fd = -1};
    int mine = dup(fd);
    errno = 0;
    int r = shm_attach(&a, mine);
    int e = errno;
    if (r == 0)
        shm_detach(&a);
    else
        close(mine);
    return r == 0 ? 0 : e;
}

static int set_size(int fd, uint64_t size)
{
    return ftruncate(fd, (off_t)size);
}

static int put_header(int fd, const struct shm_header *h)
{
    return pwrite(fd, h, sizeof *h, 0) == (ssize_t)sizeof *h ? 0 : -1;
}

static void test_reject(struct shm *s)
{
    int fd = memfd_create("not-portico", 0);
    is_int(attach_errno(fd), EINVAL, "empty memfd refused");
    is_int(set_size(fd, s->hdr->size), 0, "sized like ours");
    is_int(attach_errno(fd), EINVAL, "zeroed memfd (no magic) refused");
    struct shm_header h = *s->hdr;
    h.magic ^= 1;
    put_header(fd, &h);
    is_int(attach_errno(fd), EINVAL, "wrong magic refused");
    h = *s->hdr;
    h.version++;
    put_header(fd, &h);
    is_int(attach_errno(fd), EPROTO, "another layout version: EPROTO (a new master starts afresh)");
    h.version = 3;
    put_header(fd, &h);
    is_int(attach_errno(fd), EPROTO, "layout 3 (before ticket keys): EPROTO");
    h = *s->hdr;
    h.tickets_off = h.size - 8;
    put_header(fd, &h);
    is_int(attach_errno(fd), EINVAL, "ticket entries past the end refused");
    h = *s->hdr;
    h.tickets_off = h.conns_off;
    put_header(fd, &h);
    is_int(attach_errno(fd), EINVAL, "ticket entries over the rows refused");
    h = *s->hdr;
    put_header(fd, &h);
    is_int(attach_errno(fd), 0, "a copy of a good header is accepted");
    is_int(set_size(fd, s->hdr->size - 4096), 0, "shrunk a page");
    is_int(attach_errno(fd), EINVAL, "wrong size refused");
    h.size -= 4096;
    put_header(fd, &h);
    is_int(attach_errno(fd), EINVAL, "header size too small for its rows refused");
    close(fd);
}

/* Rows are claimed from the owner table, never twice, and released zeroed. */
static void test_rows(struct shm *s)
{
    int a = shm_row_claim(s, 100), b = shm_row_claim(s, 101);
    ok(a >= 0 && b >= 0 && a != b, "two claims get two rows");
    is_int(shm_row_owner(s, (unsigned)a), 100, "owner recorded");
    shm_row_set_owner(s, (unsigned)a, 200);
    is_int(shm_row_owner(s, (unsigned)a), 200, "owner handed to the forked child");
    shm_conn_inc(s, (unsigned)b, 11);
    is_int(shm_server_active(s, 11), 1, "a claimed row counts");
    shm_row_release(s, (unsigned)b);
    is_int(shm_server_active(s, 11), 0, "release zeroes the row");
    is_int(shm_row_owner(s, (unsigned)b), 0, "and frees it");
    /* A second master attached to the same region sees the owned rows. */
    struct shm other = {.fd = -1};
    is_int(shm_attach(&other, dup(s->fd)), 0, "second view");
    int c = shm_row_claim(&other, 300);
    ok(c >= 0 && c != a, "a second master does not claim a live row");
    is_int(c, b, "it takes the lowest free one");
    shm_row_release(&other, (unsigned)c);
    shm_detach(&other);
    shm_row_release(s, (unsigned)a);
    is_int(shm_row_claim(s, 0), -1, "owner 0 is refused");
    unsigned n = 0;
    while (shm_row_claim(s, 7) >= 0)
        n++;
    is_int(n, SHM_MAX_ROWS, "every row can be claimed, then none");
    for (unsigned r = 0; r < SHM_MAX_ROWS; r++)
        shm_row_release(s, r);
}

int main(void)
{
    struct shm s = {.fd = -1};
    is_int(shm_create(&s), 0, "create");
    is_int(s.hdr->magic, SHM_MAGIC, "magic");
    is_int(s.hdr->version, SHM_VERSION, "version");
    ok(s.hdr->ip_off >= s.hdr->conns_off + (uint64_t)SHM_MAX_ROWS * SHM_MAX_SERVERS * 4,
       "the address table follows the rows");
    uint64_t ipc_end = s.hdr->ipc_off + (uint64_t)SHM_MAX_ROWS * s.hdr->ip_slots * 2;
    ok(s.hdr->tickets_off >= ipc_end && s.hdr->tickets_off < ipc_end + 4096,
       "ticket entries follow the address table and contributions");
    ok(s.hdr->size >= s.hdr->tickets_off + SHM_TICKET_ENTRIES * sizeof(struct ticket_entry) &&
           s.hdr->size <
               s.hdr->tickets_off + SHM_TICKET_ENTRIES * sizeof(struct ticket_entry) + 4096,
       "size = header + rows + address table + contributions + ticket entries");
    test_counts(&s);
    test_attach(&s);
    test_reject(&s);
    test_rows(&s);
    shm_detach(&s);
    ok(s.hdr == NULL && s.fd == -1, "detach resets the handle");
    return tap_done();
}
