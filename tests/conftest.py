"""Fixtures shared by the test modules under tests/ (hypothesis profiles live in the root
conftest.py). The S3 server fixtures come from s3_support, so any test can ask for
`s3_server` (one SeaweedFS per session, started on first use) or `s3_prefix`."""

from s3_support import s3_prefix, s3_server

__all__ = ["s3_prefix", "s3_server"]
