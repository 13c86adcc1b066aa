# The socket-level syscalls _conn.pyx calls with the GIL released: recv/send
# (sys/socket.h), poll (poll.h) and Linux sendfile(2) (sys/sendfile.h).
# writev comes from Cython's own posix/uio.pxd.

from posix.types cimport off_t


cdef extern from "<sys/socket.h>" nogil:
    ssize_t recv(int fd, void* buf, size_t n, int flags)
    ssize_t send(int fd, const void* buf, size_t n, int flags)
    int shutdown(int fd, int how)
    enum: MSG_NOSIGNAL
    enum: MSG_MORE
    enum: MSG_DONTWAIT
    enum: SHUT_WR


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
