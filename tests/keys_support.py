"""What the encrypted-repository tests share: cheap Argon2id key slots (a slot keeps its
own parameters, so whoever opens it later does so cheaply too) and forgetting every key
this process holds, as a new process would."""

from __future__ import annotations

import pytest
from rustybackup import keys


def cheap_argon2(mp: pytest.MonkeyPatch) -> None:
    """Small Argon2id parameters for the slots made while `mp` is in effect."""
    mp.setattr(keys, "ARGON2_M_KIB", 64)
    mp.setattr(keys, "ARGON2_T", 1)
    mp.setattr(keys, "ARGON2_P", 1)


def forget_keys() -> None:
    """No passphrase, unlocked key or set key of an earlier run left in memory."""
    keys._credentials.clear()
    with keys._lock:
        keys._unlocked.clear()
