"""`copy` into another repository's keys, next to the same-keys copy (ciphertext as it is)
and `restic copy` between two repositories with different passwords (which decrypts and
re-encrypts every blob too), in interleaved rounds.

Tree: RB_BENCH_FILES files of RB_BENCH_FILE_MIB MiB of random bytes (default 4 x 2 MiB;
the figures in benches/README.md use 4 x 16), backed up once (FULL) by each tool into an
encrypted repository; each round copies the whole repository into a new one made before
the clock starts (key derivation is not timed). Prints min and median wall and CPU
seconds per tool (CPU: this process's threads for ours, the waited child for restic).
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from bench_data import FILE_MIB, FILES, random_tree
from peers import PEER_ENV, run_quiet
from rustybackup import BackupManager, keys
from rustybackup.copy import copy_sets
from rustybackup.copy_reencrypt import SourceCredentials

ROUNDS = 3


@pytest.mark.benchmark(group="copy into other keys, interleaved rounds")
def test_copy_reencrypt_interleaved(benchmark: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # What opens a same-keys copy's target (it gets A's keyring); A and each re-encrypt
    # target are unlocked explicitly.
    monkeypatch.setenv(keys.PASSWORD_ENV, "bench")
    # Key derivation is never timed; cheap slots keep the untimed setup short.
    monkeypatch.setattr(keys, "ARGON2_M_KIB", 64)
    monkeypatch.setattr(keys, "ARGON2_T", 1)
    disabled = bool(getattr(benchmark, "disabled", False))
    rounds = 1 if disabled else ROUNDS
    file_mib = 1 if disabled else FILE_MIB
    src = random_tree(tmp_path / "src", FILES, file_mib)
    pw_a, pw_b = tmp_path / "a.txt", tmp_path / "b.txt"
    pw_a.write_text("bench")
    pw_b.write_text("other")
    a = BackupManager(tmp_path / "a")
    keys.init_encryption(a.repository, password="bench")
    a.register_database("bench", src)
    a.backup("bench", "full")
    restic = shutil.which("restic")
    names = ["ours re-encrypt", "ours same keys"] + (["restic copy"] if restic else [])
    if restic:
        run_quiet(restic, "init", "--repo", str(tmp_path / "ra"))
        run_quiet(restic, "backup", "--repo", str(tmp_path / "ra"), ".", cwd=src)

    def prepare(name: str, r: int) -> Callable[[], None]:
        dst = tmp_path / f"{name.replace(' ', '-')}-{r}"
        if name == "ours re-encrypt":
            b = BackupManager(dst)
            keys.init_encryption(dst, password="other")
            keys.unlock(dst, password="other")
            creds = SourceCredentials(password_file=pw_a)
            return lambda: _ok(copy_sets(a, b, source_credentials=creds).ok)
        if name == "ours same keys":
            b = BackupManager(dst)
            return lambda: _ok(copy_sets(a, b).ok)
        assert restic is not None
        run_quiet(restic, "init", "--repo", str(dst))
        return lambda: run_quiet(
            restic, "copy", "--repo", str(dst), "--from-repo", str(tmp_path / "ra"), "--from-password-file", str(pw_a)
        )

    keys.unlock(a.repository, password="bench")
    PEER_ENV["RESTIC_PASSWORD"] = "other"
    wall: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    loads = [os.getloadavg()[0]]
    for r in range(rounds + (0 if disabled else 1)):  # round 0 warms up (dropped)
        order = names[r % len(names) :] + names[: r % len(names)]
        for n in order:
            run = prepare(n, r)
            kids = resource.getrusage(resource.RUSAGE_CHILDREN)
            c, t = time.process_time(), time.perf_counter()
            run()
            wall.setdefault(n, []).append(time.perf_counter() - t)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            child = after.ru_utime + after.ru_stime - kids.ru_utime - kids.ru_stime
            cpu.setdefault(n, []).append(time.process_time() - c + child)
        loads.append(os.getloadavg()[0])
    PEER_ENV["RESTIC_PASSWORD"] = "bench"
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    if disabled:
        return
    mib = FILES * file_mib
    print(f"\ncopy of {mib} MiB, {rounds} rounds after a warm-up, load average {min(loads):.1f}-{max(loads):.1f}")
    for n in names:
        w, u = wall[n][1:], cpu[n][1:]
        print(
            f"{n:18} wall min {min(w):6.3f} median {statistics.median(w):6.3f}"
            f"  cpu min {min(u):6.3f} median {statistics.median(u):6.3f}"
        )
    benchmark.extra_info.update({n: {"wall": wall[n][1:], "cpu": cpu[n][1:]} for n in names})


def _ok(ok: bool) -> None:
    assert ok
