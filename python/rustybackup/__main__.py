"""``python -m rustybackup`` works like the ``rustybackup`` command; `main` is also that
command's entry point.

``archive-push`` runs once per WAL file as PostgreSQL's archive_command; a call for a
file an earlier push already archived ahead is answered by ``postgres.archive_fast``
before click and the command group are imported; ``archive-get`` (restore_command) of a
file waiting in the spool, of one sealed into a set of a plain repository, or of one the
archive lacks, by ``postgres.archive_get_fast``.
Every other command line goes to the full command group unchanged.

The installed ``rustybackup`` command starts archive-push's and archive-get's
interpreter without `site` (``-S``, python/rustybackup.data/scripts/rustybackup): the
full command then runs `site` here first, so it sees the interpreter's usual path and .pth hooks.
"""

import atexit
import gc
import os
import sys


def main() -> None:
    """The ``rustybackup`` command."""
    # Registered first, so it runs last: after every other exit handler (logging's
    # flush, temporary directories), the interpreter's finalization runs up to three
    # full cyclic collections over every function, class and dict of the imported
    # modules, 9-12 ms of each command's exit (issue 17). Frozen objects are not
    # examined again; module teardown still frees them by reference count. What a
    # command opens it closes itself (cli/context.py closes the managers), so nothing
    # waits for a collection at exit; only this process runs it, never a host that
    # imports the package.
    atexit.register(gc.freeze)
    argv = sys.argv[1:]
    if "archive-push" in argv:
        from .postgres.archive_fast import answer

        code = answer(argv, os.environ)
        if code is not None:
            sys.exit(code)
    elif "archive-get" in argv:
        from .postgres.archive_get_fast import answer as answer_get

        code = answer_get(argv, os.environ)
        if code is not None:
            sys.exit(code)
    if sys.flags.no_site and "site" not in sys.modules:
        import site

        site.main()
    from .gcpause import paused

    # The command group's import (click, logging, the CLI's state) makes no garbage
    # cycles, yet the collector ran about 12 young collections during it, 3.5-4 ms of
    # every command's start (issue 17). Only the import is paused, as a command's
    # modules' is (cli/__init__.py); the command runs with the collector as it was.
    with paused():
        from .cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
