"""What a file-tree backup leaves out (issue 17): gitignore patterns (``--exclude``,
``--exclude-file``), directories tagged as caches (``--exclude-caches``) and other file
systems (``--one-file-system``). Stored per database in the catalog and per job; the
walk (sources.py) applies it and never descends into what it excludes."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:
    from ._core import PathMatcher

CACHEDIR_TAG = "CACHEDIR.TAG"
CACHEDIR_SIGNATURE = b"Signature: 8a477f597d28d172789f06886806bc55"
"""The Cache Directory Tagging Specification's header (bford.info/cachedir): a directory
holding a ``CACHEDIR.TAG`` that starts with it is a cache. As GNU tar's
``--exclude-caches``, the directory and its tag are kept, the rest of it is not."""


@dataclass(frozen=True)
class Selection:
    """A tree's selection rules. ``exclude`` are gitignore lines, in order (the last
    match wins, ``!`` re-includes); ``exclude_files`` are files of such lines, read at
    every backup (as restic reads ``--exclude-file``)."""

    exclude: tuple[str, ...] = ()
    exclude_files: tuple[str, ...] = ()
    exclude_caches: bool = False
    one_file_system: bool = False

    def __post_init__(self) -> None:
        for i, p in enumerate(self.exclude):
            if not isinstance(p, str) or "\n" in p or "\0" in p:
                raise ConfigError(f"exclude[{i}]: {p!r} is not one pattern line")

    @property
    def empty(self) -> bool:
        return not (self.exclude or self.exclude_files or self.exclude_caches or self.one_file_system)

    def patterns(self) -> list[str]:
        """The exclude lines, then each exclude file's lines (in the order given)."""
        out = list(self.exclude)
        for name in self.exclude_files:
            try:
                text = Path(name).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                why = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
                raise ConfigError(f"exclude file {name}: cannot be read: {why}") from exc
            out.extend(text.splitlines())
        return out

    def matcher(self) -> PathMatcher | None:
        """The compiled patterns; None when there are none. A bad pattern is a
        ``ConfigError`` naming it (and its file)."""
        from ._core import PathMatcher

        lines = self.patterns()
        if not any(line.strip() and not line.startswith("#") for line in lines):
            return None
        try:
            return PathMatcher(lines)
        except ConfigError as exc:
            raise ConfigError(f"selection of a file tree: {exc} (exclude lines, then exclude files)") from None

    def plain(self) -> dict[str, Any] | None:
        """As plain JSON data (exports, ``db list --json``); None: nothing selected away."""
        if self.empty:
            return None
        return {
            "exclude": list(self.exclude),
            "exclude_files": list(self.exclude_files),
            "exclude_caches": self.exclude_caches,
            "one_file_system": self.one_file_system,
        }

    def to_json(self) -> str | None:
        """The catalog's form (None: nothing selected away)."""
        data = self.plain()
        return None if data is None else json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | None, where: str = "selection") -> Selection:
        if not text:
            return cls()
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"{where}: not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{where}: expected an object")
        return cls.build(
            exclude=data.get("exclude", ()),
            exclude_files=data.get("exclude_files", ()),
            exclude_caches=data.get("exclude_caches", False),
            one_file_system=data.get("one_file_system", False),
            where=where,
        )

    @classmethod
    def build(
        cls,
        *,
        exclude: object = (),
        exclude_files: object = (),
        exclude_caches: object = False,
        one_file_system: object = False,
        where: str = "selection",
    ) -> Selection:
        """Checks the types of user-given rules (API, CLI, job files); exclude files are
        made absolute, since a backup runs from anywhere."""

        def strings(value: object, name: str) -> tuple[str, ...]:
            if isinstance(value, str) or not isinstance(value, list | tuple):
                raise ConfigError(f"{where}: {name} must be a list of strings, got {value!r}")
            for i, v in enumerate(value):
                if not isinstance(v, str):
                    raise ConfigError(f"{where}: {name}[{i}] must be a string, got {v!r}")
            return tuple(value)

        for name, flag in (("exclude_caches", exclude_caches), ("one_file_system", one_file_system)):
            if not isinstance(flag, bool):
                raise ConfigError(f"{where}: {name} must be true or false, got {flag!r}")
        files = tuple(str(Path(f).absolute()) for f in strings(exclude_files, "exclude_files"))
        return cls(strings(exclude, "exclude"), files, bool(exclude_caches), bool(one_file_system))

    def merged(self, other: Selection) -> Selection:
        """These rules and then `other`'s (a job's on top of its database's)."""
        return Selection(
            self.exclude + other.exclude,
            self.exclude_files + other.exclude_files,
            self.exclude_caches or other.exclude_caches,
            self.one_file_system or other.one_file_system,
        )


def is_cache_dir(directory: str | os.PathLike[str]) -> bool:
    """Whether `directory` holds a CACHEDIR.TAG with the standard signature (a link named
    so does not count: it is not opened)."""
    try:
        fd = os.open(os.path.join(directory, CACHEDIR_TAG), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        return os.read(fd, len(CACHEDIR_SIGNATURE)) == CACHEDIR_SIGNATURE
    except OSError:
        return False
    finally:
        os.close(fd)
