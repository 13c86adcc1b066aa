# The socket-level syscalls _conn.pyx calls with the GIL released: recv/send
# (sys/socket.h), poll (poll.h), Linux sendfile(2) (sys/sendfile.h) and
# preadv2(2); writev comes from Cython's own posix/uio.pxd. Also the address
# conversions (inet_pton/inet_ntop) that _conn.pyx and the parser's PROXY
# protocol code use.

from posix.types cimport off_t
from posix.uio cimport iovec


cdef extern from "<sys/socket.h>" nogil:
    ssize_t recv(int fd, void* buf, size_t n, int flags)
    ssize_t send(int fd, const void* buf, size_t n, int flags)
    int shutdown(int fd, int how)
    enum: MSG_NOSIGNAL
    enum: MSG_MORE
    enum: MSG_DONTWAIT
    enum: MSG_PEEK
    enum: SHUT_WR
    enum: SHUT_RDWR


cdef extern from "<poll.h>" nogil:
    struct pollfd:
        int fd
        short events
        short revents
    int poll(pollfd* fds, unsigned long nfds, int timeout)
    enum: POLLIN
    enum: POLLOUT
    enum: POLLERR
    enum: POLLHUP


cdef extern from "<sys/sendfile.h>" nogil:
    ssize_t sendfile(int out_fd, int in_fd, off_t* offset, size_t count)


# preadv2(2) with RWF_NOWAIT: read a file only from the page cache, never
# blocking on the disk (Linux 4.14+).
cdef extern from "<sys/uio.h>" nogil:
    ssize_t preadv2(int fd, const iovec* iov, int iovcnt, off_t offset, int flags)
    enum: RWF_NOWAIT


# accept4(2) on the listener's raw fd (no Python socket object per connection)
# and the address structures it fills in.
cdef extern from "<sys/socket.h>" nogil:
    ctypedef unsigned int socklen_t
    ctypedef unsigned short sa_family_t
    struct sockaddr:
        sa_family_t sa_family
    struct sockaddr_storage:
        sa_family_t ss_family
    int accept4(int fd, sockaddr* addr, socklen_t* addrlen, int flags)
    enum: SOCK_NONBLOCK
    enum: SOCK_CLOEXEC
    enum: AF_INET
    enum: AF_INET6
    enum: AF_UNIX


cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        pass
    struct in6_addr:
        pass
    struct sockaddr_in:
        sa_family_t sin_family
        unsigned short sin_port
        in_addr sin_addr
    struct sockaddr_in6:
        sa_family_t sin6_family
        unsigned short sin6_port
        in6_addr sin6_addr
    unsigned short ntohs(unsigned short)


cdef extern from "<arpa/inet.h>" nogil:
    int inet_pton(int af, const char* src, void* dst)
    const char* inet_ntop(int af, const void* src, char* dst, socklen_t size)
    enum: INET6_ADDRSTRLEN


# epoll_ctl(2) for a worker's selector that re-arms a connection without
# releasing the GIL (select.epoll.modify releases it around the call).
cdef extern from "<sys/epoll.h>" nogil:
    ctypedef union epoll_data_t:
        void* ptr
        int fd
        unsigned int u32
        unsigned long long u64
    struct epoll_event:
        unsigned int events
        epoll_data_t data
    int epoll_ctl(int epfd, int op, int fd, epoll_event* event)
    enum: EPOLL_CTL_ADD
    enum: EPOLL_CTL_MOD
