"""Manifests edited by tests: a document changed by hand is stored as a writer of its
format stores it (from format 4 on, with its own checksum first; rust/src/format/
manifest_sum.rs), so that what a test exercises is the field it changed, not the checksum
(tests/test_manifest_checksum.py is the checksum's own)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rustybackup import _core


def stored(doc: Any) -> bytes:
    """`doc` as a writer of its format stores it; a document that is not an object, or
    not of format 4 or more, as plain JSON."""
    if not isinstance(doc, dict):
        return json.dumps(doc).encode()
    body = {k: v for k, v in doc.items() if k != "checksum"}
    text = json.dumps(body).encode()
    fmt = body.get("format")
    return _core.manifest_sum_seal(text) if type(fmt) is int and fmt >= 4 else text


def edit(path: Path, change: Callable[[dict[str, Any]], object]) -> None:
    """Reads the manifest at `path`, lets `change` edit the document, stores it again."""
    doc = json.loads(path.read_bytes())
    change(doc)
    path.write_bytes(stored(doc))
