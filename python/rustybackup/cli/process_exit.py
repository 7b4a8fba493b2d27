"""The end of the ``rustybackup`` process, without the interpreter's teardown.

After a command, CPython's teardown clears every module, frees every object one by one
and runs the cyclic collector over them, for memory the kernel takes back at once when
the process ends: 5-10 ms of an unchanged second backup's ~190 (issue 17,
benches/README.md). What of that teardown anyone can observe is: non-daemon threads
joined, atexit handlers run (logging's flushes and closes its handlers), stdout and
stderr flushed, buffered files flushed and closed, finalizers run (``__del__``, a
suspended generator's ``finally``), and SQLite connections closed (the catalog's close
checkpoints its WAL into the database file and removes the WAL and its index).

`leave` does each of those itself, then ends the process with ``os._exit``. When
anything is left that it does not close itself (a live thread, an open writable file, an
object with a finalizer), or a flush fails, the interpreter's teardown runs as always.
Only the command's entry point calls it (rustybackup/__main__.py), never code that runs
commands in process (``cli.main``: tests, the scheduler).
"""

from __future__ import annotations

import atexit
import gc
import io
import os
import sys
import threading
import types
from typing import TYPE_CHECKING, NoReturn

if TYPE_CHECKING:
    import sqlite3

# What an object needs before the process may end without the teardown.
_CLOSE = 1  # a SQLite connection: closed here
_CHECK = 2  # a writable buffered file, a generator, a finalizer: the teardown may have to run


def leave(exc: SystemExit) -> NoReturn:
    """Ends the process with `exc`'s exit status once everything the teardown would do
    that can be observed is done; raises `exc` (the usual teardown) when it cannot."""
    code = exc.code
    if code is not None and type(code) is not int:
        raise exc  # a message: the interpreter prints it and exits with 1
    # The teardown joins these before it runs the atexit handlers.
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        raise exc
    # Runs the handlers and clears them: a teardown that follows runs none twice.
    atexit._run_exitfuncs()
    connections = _connections_if_nothing_else()
    if connections is None:
        raise exc
    try:
        for conn in connections:
            conn.close()
        sys.stdout.flush()
        sys.stderr.flush()
    except Exception:
        # The teardown flushes again and reports the failure as it always does (an
        # unwritable stdout: a message and exit status 120).
        raise exc from None
    os._exit(0 if code is None else code)


def _connections_if_nothing_else() -> list[sqlite3.Connection] | None:
    """The open SQLite connections, or None when an object needs the teardown: a
    writable buffered file other than stdout/stderr, a suspended generator, an instance
    of a class with ``__del__``. One pass over the collector's objects (~19,000 after a
    backup, ~2 ms), each type classified once."""
    # Imported only by a command that opened a catalog; not imported here for one that did not.
    module = sys.modules.get("sqlite3")
    connection = None if module is None else module.Connection
    std = {id(s) for s in (sys.stdin, sys.stdout, sys.stderr, sys.__stdin__, sys.__stdout__, sys.__stderr__)}
    std |= {id(getattr(s, "buffer", None)) for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)}
    kinds: dict[type, int] = {}
    connections: list[sqlite3.Connection] = []
    for obj in gc.get_objects():
        kind = kinds.get(type(obj))
        if kind is None:
            kind = kinds[type(obj)] = _kind(type(obj), connection)
        if kind == _CLOSE:
            connections.append(obj)
        elif kind == _CHECK and id(obj) not in std and _needs_teardown(obj):
            return None
    return connections


def _kind(t: type, connection: type | None) -> int:
    if connection is not None and issubclass(t, connection):
        return _CLOSE
    if issubclass(t, io.BufferedWriter | io.BufferedRandom | io.TextIOWrapper | types.GeneratorType):
        return _CHECK
    if issubclass(t, io.IOBase):
        # Unbuffered or read-only: nothing waits to be written; the kernel closes the
        # descriptor as the teardown would.
        return 0
    return _CHECK if getattr(t, "__del__", None) is not None else 0


def _needs_teardown(obj: object) -> bool:
    if isinstance(obj, types.GeneratorType):
        # One stopped at a yield runs its `finally` when it is freed.
        return obj.gi_suspended
    if isinstance(obj, io.IOBase):
        try:
            return not obj.closed and obj.writable()
        except ValueError:
            return True  # a detached text wrapper: left to the teardown
    return True  # an object with a finalizer
