"""Where a repository lives: a local directory or an ``s3://bucket/prefix`` URL.

Anything that looks like a URL (``scheme://``) is parsed as one and never taken for a
relative path: ``Path("s3://b/p")`` would silently name the local directory ``s3:/b/p``.
A local directory literally called ``s3:`` is still reachable as ``./s3:/...``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

# RFC 3986 scheme, then "://": the one test for "this is a URL, not a path".
_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://(.*)$", re.DOTALL)
# S3 bucket naming rules (docs.aws.amazon.com "Bucket naming rules"): 3-63 characters,
# lower-case letters, digits, dots and hyphens, starting and ending alphanumeric.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
_IPV4 = re.compile(r"^\d+\.\d+\.\d+\.\d+$")
SCHEMES = ("s3",)
MAX_PREFIX = 512


@dataclass(frozen=True)
class RepoUrl:
    """A remote repository: ``s3://bucket/prefix``. `prefix` has no leading or trailing
    slash and may be empty (the bucket's root)."""

    scheme: str
    bucket: str
    prefix: str = ""

    def __str__(self) -> str:
        return f"{self.scheme}://{self.bucket}" + (f"/{self.prefix}" if self.prefix else "")

    def key(self, rel: str) -> str:
        """The object key of `rel` (a repository-relative path such as
        ``sets/<id>/manifest.json``) inside this repository's prefix."""
        return f"{self.prefix}/{rel}" if self.prefix else rel

    def cache_dir(self, endpoint: str | None = None) -> Path:
        """The local cache of this repository (its catalog, its manifests, the pieces a
        restore fetched) under ``$XDG_CACHE_HOME/rustybackup/``. Keyed by the URL and the
        endpoint: one bucket name on two servers is two repositories."""
        # Imported here: hashlib loads OpenSSL (~2 ms), which a local repository's
        # commands never need (issue 17, the unchanged backup's start).
        import hashlib

        if endpoint is None:
            endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
        digest = hashlib.sha256(f"{self}\n{endpoint.rstrip('/')}".encode()).hexdigest()[:24]
        return cache_home() / f"{self.scheme}-{self.bucket}-{digest}"


def cache_home() -> Path:
    """``$XDG_CACHE_HOME/rustybackup`` (default ``~/.cache/rustybackup``); a relative
    XDG_CACHE_HOME is ignored, as the XDG base directory specification says."""
    base = os.environ.get("XDG_CACHE_HOME", "")
    root = Path(base) if base and os.path.isabs(base) else Path.home() / ".cache"
    return root / "rustybackup"


def is_url(value: object) -> bool:
    """Whether `value` is a string (or path-like) written as a URL (``scheme://...``)."""
    if isinstance(value, RepoUrl):
        return True
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    return isinstance(value, str) and _URL.match(value) is not None


def parse_url(text: str) -> RepoUrl:
    """Parses ``s3://bucket[/prefix]``; ConfigError names the part that is wrong."""
    m = _URL.match(text)
    if m is None:
        raise ConfigError(f"repository {text!r} is not a URL (expected s3://bucket/prefix)")
    scheme, rest = m.group(1).lower(), m.group(2)
    if scheme not in SCHEMES:
        raise ConfigError(
            f"repository {text!r}: scheme {scheme + '://'!r} is not supported "
            f"(supported: {', '.join(s + '://' for s in SCHEMES)}, or a local directory)"
        )
    for ch, what in (("?", "query"), ("#", "fragment"), ("\\", "backslash")):
        if ch in rest:
            raise ConfigError(f"repository {text!r}: a {what} ({ch!r}) is not allowed in an {scheme}:// URL")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in rest):
        raise ConfigError(f"repository {text!r}: control characters are not allowed")
    bucket, _, prefix = rest.partition("/")
    if not bucket:
        raise ConfigError(f"repository {text!r}: the bucket name is missing ({scheme}://BUCKET/prefix)")
    if "@" in bucket or ":" in bucket:
        raise ConfigError(
            f"repository {text!r}: bucket {bucket!r} holds '@' or ':'; credentials and endpoint come from "
            "AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_ENDPOINT_URL, not the URL"
        )
    if _BUCKET.match(bucket) is None or ".." in bucket or _IPV4.match(bucket):
        raise ConfigError(
            f"repository {text!r}: bucket {bucket!r} is not a valid bucket name "
            "(3-63 lower-case letters, digits, '.' or '-', starting and ending with a letter or digit)"
        )
    prefix = prefix.strip("/")
    if len(prefix) > MAX_PREFIX:
        raise ConfigError(f"repository {text!r}: prefix is {len(prefix)} characters long (at most {MAX_PREFIX})")
    for n, part in enumerate(prefix.split("/") if prefix else []):
        if part in ("", ".", ".."):
            raise ConfigError(
                f"repository {text!r}: prefix segment {n + 1} is {part!r} (empty, '.' and '..' are not allowed)"
            )
    return RepoUrl(scheme, bucket, prefix)


def parse_repository(value: str | os.PathLike[str] | RepoUrl) -> Path | RepoUrl:
    """A repository argument as given by a user: a URL when it is written as one, else a
    local directory (made absolute, exactly as before remote repositories existed)."""
    if isinstance(value, RepoUrl):
        return value
    text = os.fspath(value)
    if isinstance(text, bytes):
        raise ConfigError(f"repository {text!r} must be text, not bytes")
    if is_url(text):
        return parse_url(text)
    return Path(text).absolute()


__all__ = ["RepoUrl", "cache_home", "is_url", "parse_repository", "parse_url"]
