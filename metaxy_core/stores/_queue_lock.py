"""A first-come-first-served readers/writer lock shared by processes through files beside a database.

DuckDB lets one process write a file, or several read it, and refuses every other open. Retrying
on that refusal is unfair (whoever retries at the right moment wins; a waiter can starve), so
processes queue here before they open the file:

* ``<database>.locks/queue`` holds the ticket counter, the last writer's ticket and the readers
  since then; it is locked (``flock``) only for the instant it takes to draw a ticket.
* Each ticket is a file ``<database>.locks/<n>`` its owner keeps ``flock``-ed from drawing the
  ticket until it closes the database; it holds the owner's PID for error messages.
* A reader waits for the last writer before it; a writer waits for that writer and for every
  reader since. Waiters are therefore served in ticket order, consecutive readers together.

The kernel drops an ``flock`` when its process dies, so a crashed holder never blocks the queue.
``flock`` alone is not first-come-first-served on Linux: every release wakes all waiters at once.

Within one process, stores on the same file share one place in the queue (a second ticket would
wait for the first forever): DuckDB shares one database instance between connections of a process.
"""

import contextlib
import fcntl
import json
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from metaxy_core.errors import StoreError


class LockTimeoutError(StoreError):
    """Waiting for the database file took longer than the store's ``lock_timeout``."""


def lock_dir(database: str) -> Path:
    return Path(f"{database}.locks")


def _holder(path: Path) -> str:
    """Who holds a ticket file, for error messages."""
    try:
        info = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        return "another process"
    pid, mode = info.get("pid"), info.get("mode", "?")
    if not pid:
        return "another process"
    doing = ("reading" if mode == "read" else "writing") if info.get("holding") else f"queued to {mode}"
    return f"process {pid} ({doing})"


@dataclass
class Ticket:
    number: int
    path: Path
    fd: int

    def release(self) -> None:
        # Unlink first: a successor that opens the name later finds no file and creates a fresh,
        # unlocked one, which is right since this ticket is done.
        with contextlib.suppress(OSError):
            self.path.unlink()
        with contextlib.suppress(OSError):
            os.close(self.fd)


def _draw(folder: Path, shared: bool) -> tuple[Ticket, list[int]]:
    """Take the next ticket and lock its file; return it and the tickets to wait for."""
    queue_fd = os.open(folder / "queue", os.O_RDWR | os.O_CREAT, 0o666)
    try:
        fcntl.flock(queue_fd, fcntl.LOCK_EX)
        raw = os.pread(queue_fd, os.fstat(queue_fd).st_size, 0).decode() or "{}"
        try:
            state = json.loads(raw)
        except ValueError:
            state = {}
        number = int(state.get("next", 0))
        writer = state.get("writer")
        # A finished reader removed its ticket file: forget it, so a long run of readers stays small.
        readers = [int(r) for r in state.get("readers", []) if (folder / str(r)).exists()]
        waits = ([int(writer)] if writer is not None else []) + ([] if shared else readers)
        if shared:
            state["readers"] = [*readers, number]
        else:
            state["writer"], state["readers"] = number, []
        state["next"] = number + 1
        path = folder / str(number)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, json.dumps({"pid": os.getpid(), "mode": "read" if shared else "write"}).encode())
        data = json.dumps(state).encode()
        os.ftruncate(queue_fd, 0)
        os.pwrite(queue_fd, data, 0)
        return Ticket(number, path, fd), waits
    finally:
        os.close(queue_fd)  # closing drops the queue flock


def _wait_for(path: Path, deadline: float, what: str) -> None:
    """Block until the ticket file at ``path`` is unlocked (its owner finished or died)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except FileNotFoundError:
        return
    try:
        delay = 0.001
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                pass
            if time.monotonic() > deadline:
                raise LockTimeoutError(
                    f"Timed out waiting for {what}: {_holder(path)} holds it. Close that store (a long "
                    "`with store:` block keeps the file), or raise the store's lock_timeout."
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.02)
    finally:
        os.close(fd)


def _clean(folder: Path, below: int) -> None:
    """Remove ticket files of tickets that were all served (left behind by crashed processes)."""
    with contextlib.suppress(OSError):
        for entry in os.scandir(folder):
            if entry.name.isdigit() and int(entry.name) < below:
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


def acquire_ticket(database: str, shared: bool, timeout: float) -> Ticket:
    folder = lock_dir(database)
    folder.mkdir(exist_ok=True)
    deadline = time.monotonic() + timeout
    ticket, waits = _draw(folder, shared)
    try:
        for number in waits:
            _wait_for(folder / str(number), deadline, f"DuckDB file {database}")
    except BaseException:
        ticket.release()
        raise
    if waits:
        _clean(folder, min(waits) if shared else ticket.number)
    info = {"pid": os.getpid(), "mode": "read" if shared else "write", "holding": True}
    with contextlib.suppress(OSError):
        os.ftruncate(ticket.fd, 0)
        os.pwrite(ticket.fd, json.dumps(info).encode(), 0)
    return ticket


@dataclass
class _Held:
    shared: bool
    count: int = 0
    ticket: Ticket | None = None
    ready: bool = False
    threads: dict[int, int] = field(default_factory=dict)
    """Holds per thread: a thread holding the file read-only cannot wait for itself to finish."""


_HELD: dict[str, _Held] = {}
_COND = threading.Condition()


def acquire(database: str, shared: bool, timeout: float) -> bool:
    """Queue for ``database``; returns whether this process holds it shared (read-only).

    A process that already holds the file joins that hold: a writer's hold serves readers too (so
    they open read-write, as DuckDB requires within one process); a write request waits until the
    process's readers are done.
    """
    key = os.path.realpath(database)
    me = threading.get_ident()
    deadline = time.monotonic() + timeout
    with _COND:
        while True:
            held = _HELD.get(key)
            if held is None:
                held = _HELD[key] = _Held(shared=shared)
                break
            if held.ready and (shared or not held.shared):
                held.count += 1
                held.threads[me] = held.threads.get(me, 0) + 1
                return held.shared
            remaining = deadline - time.monotonic()
            if remaining <= 0 or held.threads.get(me):
                raise LockTimeoutError(
                    f"Cannot open DuckDB file {database} for writing: this process (PID {os.getpid()}) has it open "
                    "read-only in another store; close that store first."
                )
            _COND.wait(min(remaining, 0.05))
    try:
        ticket = acquire_ticket(database, shared, max(deadline - time.monotonic(), 0.0))
    except BaseException:
        with _COND:
            del _HELD[key]
            _COND.notify_all()
        raise
    with _COND:
        held.ticket, held.count, held.ready, held.threads = ticket, 1, True, {me: 1}
        _COND.notify_all()
    return shared


def release(database: str) -> None:
    key = os.path.realpath(database)
    with _COND:
        held = _HELD.get(key)
        if held is None:
            return
        held.count -= 1
        me = threading.get_ident()
        if held.threads.get(me, 0) > 1:
            held.threads[me] -= 1
        else:
            held.threads.pop(me, None)
        if held.count <= 0:
            if held.ticket is not None:
                held.ticket.release()
            del _HELD[key]
            _COND.notify_all()
