"""Worker liveness: one heartbeat slot per worker in shared anonymous memory.

Theory of operation
-------------------
Gunicorn proves a worker is alive by ``fchmod``-ing a temporary file and
having the master ``fstat`` it. When the filesystem holding that file stalls
(a busy disk, an overlay filesystem, a hung NFS mount), every worker looks
dead at once and the master kills them all. We keep the same protocol but put
the clock in memory: the master maps anonymous shared pages
(``mmap(-1, ...)`` is ``MAP_SHARED | MAP_ANONYMOUS`` on Linux) *before*
forking, so parent and child see the same bytes and no file is involved.

Each slot is 256 bytes: an 8-byte float holding ``time.monotonic()``
(CLOCK_MONOTONIC is system-wide, so the master can compare it with its own
clock), an 8-byte state the worker moves from booting to booted once its app
is loaded (the master retires the old workers on HUP only when the new ones
have booted) and to leaving when it retires by itself (``max_requests``, a
stuck thread: the master starts its replacement at once instead of when it
exits), and a short note: the one-line reason a worker could not boot,
which the master repeats in its own last line when it stops on that
failure, or why it is leaving (the worker writes it before it exits or
raises the leaving state, the master reads it after reaping or after seeing
that state, so the two never touch it at once). An aligned 8-byte store is
a single machine write on every platform we support, so a reader never sees
a torn value in practice; a stale value only makes the master wait one more
tick.

Slots live in pages of ``SLOTS_PER_PAGE``; the pool adds a page when the
arbiter grows past what it has (TTIN), so the number of workers is not fixed
at start-up. A slot is handed to a worker at spawn and returned when the
worker is reaped. ``--worker-tmp-dir`` is accepted for Gunicorn compatibility
and ignored: nothing here touches a filesystem.
"""

from __future__ import annotations

import mmap
import struct
import time

_STAMP = struct.Struct("d")
_FLAG = struct.Struct("q")
_NOTE_LEN = struct.Struct("H")
SLOT_SIZE = 256
_NOTE_AT = _STAMP.size + _FLAG.size
_NOTE_MAX = SLOT_SIZE - _NOTE_AT - _NOTE_LEN.size
SLOTS_PER_PAGE = mmap.PAGESIZE // SLOT_SIZE
# The state word.
_BOOTING, _BOOTED, _LEAVING = 0, 1, 2


class HeartbeatSlot:
    """One worker's clock. The worker calls :meth:`beat`; the master reads :meth:`age`."""

    __slots__ = ("_mm", "_offset", "index")

    def __init__(self, mm: mmap.mmap, offset: int, index: int) -> None:
        self._mm = mm
        self._offset = offset
        self.index = index

    def beat(self) -> None:
        _STAMP.pack_into(self._mm, self._offset, time.monotonic())

    # Gunicorn's WorkerTmp spells it notify(); keep the name for user code.
    notify = beat

    def stamp_location(self) -> tuple[mmap.mmap, int]:
        """(shared page, byte offset) of the stamp ``beat`` writes: a float
        of ``time.monotonic()`` (CLOCK_MONOTONIC) there counts as a beat.
        The compiled connection core stamps it directly while a sync worker
        moves bytes (``WorkerContext.stamp_heartbeat``)."""
        return self._mm, self._offset

    def last_beat(self) -> float:
        """The ``time.monotonic()`` value of the last beat."""
        value: float = _STAMP.unpack_from(self._mm, self._offset)[0]
        return value

    # Gunicorn's WorkerTmp name.
    last_update = last_beat

    def age(self, now: float | None = None) -> float:
        """Seconds since the last beat."""
        if now is None:
            now = time.monotonic()
        return now - self.last_beat()

    def mark_booted(self, booted: bool = True) -> None:
        """Worker side: the app is loaded and the loop is about to serve."""
        _FLAG.pack_into(self._mm, self._offset + _STAMP.size, _BOOTED if booted else _BOOTING)

    def _state(self) -> int:
        state: int = _FLAG.unpack_from(self._mm, self._offset + _STAMP.size)[0]
        return state

    def booted(self) -> bool:
        """Booted, and maybe leaving since."""
        return self._state() != _BOOTING

    def mark_leaving(self, why: str) -> None:
        """Worker side: it has stopped accepting and will exit when its
        requests are done; ``why`` in a few words, for the master's log."""
        self.set_note(why)
        _FLAG.pack_into(self._mm, self._offset + _STAMP.size, _LEAVING)

    def leaving(self) -> bool:
        return self._state() == _LEAVING

    def set_note(self, text: str) -> None:
        """Worker side: a one-line reason for the master (UTF-8, cut to fit)."""
        data = text.encode("utf-8", "replace")[:_NOTE_MAX]
        data = data.decode("utf-8", "ignore").encode()  # never end mid-character
        start = self._offset + _NOTE_AT + _NOTE_LEN.size
        self._mm[start:start + len(data)] = data
        _NOTE_LEN.pack_into(self._mm, self._offset + _NOTE_AT, len(data))

    def note(self) -> str:
        """The note the worker left, or ``""``."""
        (size,) = _NOTE_LEN.unpack_from(self._mm, self._offset + _NOTE_AT)
        start = self._offset + _NOTE_AT + _NOTE_LEN.size
        return self._mm[start:start + min(size, _NOTE_MAX)].decode("utf-8", "replace")

    def __repr__(self) -> str:
        return f"<HeartbeatSlot {self.index} age={self.age():.3f}s>"


class HeartbeatPool:
    """Hands out slots from shared anonymous pages created in the master."""

    def __init__(self, initial_slots: int = 1) -> None:
        self._pages: list[mmap.mmap] = []
        self._free: list[int] = []
        self._grow(max(1, initial_slots))

    def _grow(self, want: int) -> None:
        while len(self._pages) * SLOTS_PER_PAGE < want:
            page = mmap.mmap(-1, mmap.PAGESIZE)
            first = len(self._pages) * SLOTS_PER_PAGE
            self._pages.append(page)
            # Lowest index first: pop() from the end of a reversed list.
            self._free.extend(range(first + SLOTS_PER_PAGE - 1, first - 1, -1))
            self._free.sort(reverse=True)

    def acquire(self) -> HeartbeatSlot:
        """A slot stamped with the current time (a new worker gets a full timeout to boot)."""
        if not self._free:
            self._grow(len(self._pages) * SLOTS_PER_PAGE + 1)
        index = self._free.pop()
        page, pos = divmod(index, SLOTS_PER_PAGE)
        slot = HeartbeatSlot(self._pages[page], pos * SLOT_SIZE, index)
        slot.beat()
        slot.mark_booted(False)
        slot.set_note("")
        return slot

    def release(self, slot: HeartbeatSlot) -> None:
        self._free.append(slot.index)
        self._free.sort(reverse=True)

    @property
    def capacity(self) -> int:
        return len(self._pages) * SLOTS_PER_PAGE

    def in_use(self) -> int:
        return self.capacity - len(self._free)

    def close(self) -> None:
        for page in self._pages:
            page.close()
        self._pages.clear()
        self._free.clear()
