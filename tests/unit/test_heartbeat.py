"""Heartbeat slots in shared anonymous memory, seen across fork."""

from __future__ import annotations

import os
import time

from fastwsgi.heartbeat import SLOTS_PER_PAGE, HeartbeatPool


def test_a_fresh_slot_is_stamped_now() -> None:
    pool = HeartbeatPool(2)
    before = time.monotonic()
    slot = pool.acquire()
    assert before <= slot.last_beat() <= time.monotonic()
    assert slot.age(slot.last_beat() + 3.0) == 3.0


def test_beat_moves_the_clock_forward() -> None:
    slot = HeartbeatPool().acquire()
    first = slot.last_beat()
    deadline = time.monotonic() + 5
    while time.monotonic() <= first and time.monotonic() < deadline:
        pass
    slot.beat()
    assert slot.last_beat() > first


def test_a_child_beat_is_visible_to_the_parent() -> None:
    pool = HeartbeatPool(4)
    slots = [pool.acquire() for _ in range(3)]
    stamped = [s.last_beat() for s in slots]
    pid = os.fork()
    if pid == 0:  # the child beats only slot 1, after the clock has moved
        try:
            deadline = time.monotonic() + 5
            while time.monotonic() <= stamped[1] + 0.01 and time.monotonic() < deadline:
                pass
            slots[1].beat()
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert slots[1].last_beat() > stamped[1]
    assert slots[0].last_beat() == stamped[0] and slots[2].last_beat() == stamped[2]


def test_pool_grows_past_a_page_and_reuses_released_slots() -> None:
    pool = HeartbeatPool(1)
    slots = [pool.acquire() for _ in range(SLOTS_PER_PAGE + 2)]
    assert len({s.index for s in slots}) == len(slots)
    assert pool.capacity == 2 * SLOTS_PER_PAGE and pool.in_use() == len(slots)
    # Slots on different pages do not alias.
    t = slots[0].last_beat()
    slots[-1].beat()
    assert slots[0].last_beat() == t
    pool.release(slots[3])
    assert pool.acquire().index == 3


def test_booted_flag_is_shared_and_reset_on_reuse() -> None:
    pool = HeartbeatPool(2)
    slot = pool.acquire()
    assert not slot.booted()
    stamp = slot.last_beat()  # acquire() stamped it with the current time
    assert stamp > 0
    pid = os.fork()
    if pid == 0:
        try:
            slot.mark_booted()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    assert slot.booted()
    # The flag sits beside the stamp, not on it: the child's mark leaves it exact.
    assert slot.last_beat() == stamp
    pool.release(slot)
    again = pool.acquire()
    assert again.index == slot.index and not again.booted()


def test_a_leaving_worker_is_seen_by_the_master_with_its_reason() -> None:
    pool = HeartbeatPool(2)
    slot, neighbour = pool.acquire(), pool.acquire()
    slot.mark_booted()
    assert not slot.leaving()
    pid = os.fork()
    if pid == 0:
        try:
            slot.mark_leaving("max_requests")
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    # Leaving is still booted (a HUP waiting on it must not wait forever).
    assert slot.leaving() and slot.booted() and slot.note() == "max_requests"
    assert not neighbour.leaving()
    pool.release(slot)
    again = pool.acquire()
    assert again.index == slot.index and not again.leaving() and not again.booted()


def test_a_note_left_by_the_child_is_read_by_the_parent_and_cleared_on_reuse() -> None:
    pool = HeartbeatPool(2)
    slot, neighbour = pool.acquire(), pool.acquire()
    assert slot.note() == ""
    stamp = slot.last_beat()
    assert stamp > 0
    long_line = "Failed to load application 'm:app': é" + "x" * 400
    pid = os.fork()
    if pid == 0:
        try:
            slot.set_note(long_line)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    note = slot.note()
    # Cut to fit the slot, never in the middle of a character, never spilling over.
    assert long_line.startswith(note) and 200 < len(note.encode()) < 256
    assert neighbour.note() == "" and not neighbour.booted()
    # The note sits past the stamp and the flag: writing it changed neither.
    assert slot.last_beat() == stamp and not slot.booted()
    pool.release(slot)
    assert pool.acquire().note() == ""


def test_a_note_cut_inside_a_character_drops_that_character() -> None:
    # Two-byte characters after one ASCII byte: the slot's cut falls inside one.
    pool = HeartbeatPool(1)
    slot = pool.acquire()
    text = "x" + "é" * 200
    slot.set_note(text)
    note = slot.note()
    assert text.startswith(note) and "\ufffd" not in note
    assert 200 < len(note.encode()) < 256
    pool.release(slot)
    pool.close()
