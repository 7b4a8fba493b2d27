"""``python -m rustybackup`` works like the ``rustybackup`` command."""

from .cli import main

if __name__ == "__main__":
    main()
