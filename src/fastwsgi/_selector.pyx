# cython: language_level=3
"""The gthread worker's selector-thread syscalls, compiled.

Theory of operation
-------------------
The selector thread hands a ready connection to the pool and takes it back
(``workers/gthread.py``). Per hand-off it re-arms the connection in epoll,
and pool threads wake it through a pipe. These are the three syscalls it
makes for that, done without releasing the GIL: none of them can block (the
pipe is non-blocking, ``epoll_ctl`` never waits), and every release while
pool threads wait for the GIL is a forced thread switch, which
``select.epoll.modify()`` and ``os.read``/``os.write`` would each cost. They
are not per-connection I/O, so they live here rather than in ``_conn``.
"""

from libc.errno cimport errno
from libc.string cimport strerror
from posix.unistd cimport read as c_read, write as c_write

from fastwsgi.includes.net cimport EPOLL_CTL_ADD, EPOLL_CTL_MOD, epoll_ctl, epoll_event


def epoll_arm(int epfd, int fd, unsigned int events, bint add):
    """``epoll_ctl`` ADD (``add``) or MOD for ``fd`` with ``data.fd = fd``
    (what ``select.epoll.poll`` reports). OSError on failure."""
    cdef epoll_event ev
    cdef int r
    ev.events = events
    ev.data.u64 = 0
    ev.data.fd = fd
    r = epoll_ctl(epfd, EPOLL_CTL_ADD if add else EPOLL_CTL_MOD, fd, &ev)
    if r < 0:
        raise OSError(errno, strerror(errno).decode())


def pipe_wake(int fd):
    """Write one byte to a non-blocking wake-up pipe (a full pipe is awake
    already, so EAGAIN is ignored)."""
    cdef char b = 120
    c_write(fd, &b, 1)


def pipe_drain(int fd):
    """Read a non-blocking wake-up pipe empty."""
    cdef char buf[256]
    cdef int _i
    for _i in range(64):
        if c_read(fd, buf, 256) < 256:
            break
