"""``python -m rustybackup`` works like the ``rustybackup`` command; `main` is also that
command's entry point.

``archive-push`` runs once per WAL file as PostgreSQL's archive_command; a call for a
file an earlier push already archived ahead is answered by ``postgres.archive_fast``
before click and the command group are imported. Every other command line goes to the
full command group unchanged.
"""

import os
import sys


def main() -> None:
    """The ``rustybackup`` command."""
    argv = sys.argv[1:]
    if "archive-push" in argv:
        from .postgres.archive_fast import answer

        code = answer(argv, os.environ)
        if code is not None:
            sys.exit(code)
    from .cli import main as cli_main

    cli_main()


if __name__ == "__main__":
    main()
