"""The manifest reader's test for a lone surrogate escape (a name that is not UTF-8,
which the Rust split cannot hold) answers as the full pattern does, through its cheap
gates (a backslash at all, then any surrogate escape)."""

from __future__ import annotations

import json
import os

from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup import manifest

# Fragments that make the gates and the full pattern disagree if either is wrong: pairs,
# lone highs and lows in both cases, escapes that are not surrogates, stray backslashes.
_PIECES = [
    b"\\ud800",
    b"\\uDBFF",
    b"\\udc00",
    b"\\uDFFF",
    b"\\ud83d\\ude00",
    b"\\uD83D\\uDE00",
    b"\\u00e9",
    b"\\ud7ff",
    b"\\u",
    b"\\\\",
    b"\\",
    b'"',
    b"a",
    b"d8",
    b"\\n",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(_PIECES), max_size=12))
def test_the_gated_check_agrees_with_the_full_pattern(pieces: list[bytes]) -> None:
    raw = b"".join(pieces)
    assert manifest._has_lone_surrogate(raw) == (manifest._LONE_SURROGATE.search(raw) is not None)


def test_documents_json_writes() -> None:
    # What json.dumps writes for names: a pair for a character outside the BMP (not
    # lone), a lone escape for a byte that is not UTF-8 (os.fsdecode's surrogateescape).
    assert not manifest._has_lone_surrogate(json.dumps({"path": "caf\u00e9/\U0001f600"}).encode())
    assert manifest._has_lone_surrogate(json.dumps({"path": os.fsdecode(b"a\xff")}).encode())
    assert not manifest._has_lone_surrogate(b'{"files": [{"path": "plain"}]}')
