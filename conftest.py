"""Hypothesis profiles for tests/ and benches/: deadline=None everywhere, because a per-example deadline is a
timing threshold and the machines are shared and noisy. Also the S3 server fixtures (``s3_server``, one
SeaweedFS per session started on first use, and ``s3_prefix``) for every test module that asks for them."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from hypothesis import HealthCheck, settings

# Here rather than in tests/conftest.py: mypy checks both trees and refuses two modules named conftest.
sys.path.insert(0, str(Path(__file__).resolve().parent / "tests"))
pytest_plugins = ["s3_support"]

settings.register_profile("dev", max_examples=50, deadline=None)
# 100 examples (hypothesis's own default) in CI: at 200 the property tests were about half of
# a 15-minute pytest run on the 2-core CI machine, and the whole run must stay well inside 30.
settings.register_profile(
    "ci",
    max_examples=100,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.getenv("HYPOTHESIS_PROFILE", "dev"))
