"""Repository URLs: s3:// parsed (never a local path), bad parts named, cache keys."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from rustybackup.cli import cli
from rustybackup.errors import ConfigError
from rustybackup.repo_url import RepoUrl, cache_home, is_url, parse_repository, parse_url

_bucket = st.from_regex(r"[a-z0-9][a-z0-9-]{1,20}[a-z0-9]", fullmatch=True)
_segment = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.=+-]{0,12}", fullmatch=True).filter(lambda s: s not in (".", ".."))


@settings(deadline=None, max_examples=300)
@given(_bucket, st.lists(_segment, max_size=5), st.booleans())
def test_parse_round_trips(bucket: str, segments: list[str], trailing: bool) -> None:
    prefix = "/".join(segments)
    text = f"s3://{bucket}" + (f"/{prefix}" if prefix else "") + ("/" if trailing else "")
    url = parse_url(text)
    # The oracle: plain string splitting of a URL known to be well formed.
    assert (url.bucket, url.prefix) == (bucket, prefix)
    assert parse_url(str(url)) == url
    assert url.key("sets/x/manifest.json") == "/".join([*segments, "sets/x/manifest.json"])
    assert parse_repository(text) == url and is_url(text)


@settings(deadline=None, max_examples=300)
@given(st.text(min_size=1, max_size=40))
def test_anything_with_a_scheme_is_never_a_path(text: str) -> None:
    if re.match(r"^[A-Za-z][A-Za-z0-9+.\-]*://", text):
        try:
            got = parse_repository(text)
        except ConfigError:
            return
        assert isinstance(got, RepoUrl)
    elif "\x00" not in text:
        got = parse_repository(text)
        assert isinstance(got, Path) and got.is_absolute()


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("s3://", "bucket name is missing"),
        ("s3:///prefix", "bucket name is missing"),
        ("s3://Bucket/x", "bucket 'Bucket' is not a valid bucket name"),
        ("s3://ab/x", "bucket 'ab' is not a valid bucket name"),
        ("s3://a..b/x", "not a valid bucket name"),
        ("s3://192.168.1.1/x", "not a valid bucket name"),
        ("s3://key:secret@bucket/x", "credentials and endpoint come from"),
        ("s3://bucket/a//b", "prefix segment 2 is ''"),
        ("s3://bucket/a/../b", "prefix segment 2 is '..'"),
        ("s3://bucket/x?region=eu", "a query ('?')"),
        ("s3://bucket/x#frag", "a fragment ('#')"),
        ("gs://bucket/x", "scheme 'gs://' is not supported"),
        ("http://host/x", "scheme 'http://' is not supported"),
        ("s3://bucket/" + "p" * 600, "prefix is 600 characters long"),
    ],
)
def test_bad_urls_name_the_part(text: str, named: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(named)):
        parse_repository(text)


def test_local_paths_work_as_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert parse_repository("repo") == tmp_path / "repo"
    # A directory named "s3:" stays reachable as a relative path.
    assert parse_repository("./s3:/bucket") == tmp_path / "s3:" / "bucket"
    assert parse_repository(tmp_path / "x") == tmp_path / "x"


def test_cache_dir_is_keyed_by_url_and_endpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:1")
    a = parse_url("s3://bucket/one").cache_dir()
    assert a.parent == tmp_path / "cache" / "rustybackup" == cache_home()
    assert a != parse_url("s3://bucket/two").cache_dir()
    assert a == parse_url("s3://bucket/one/").cache_dir()
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:2")
    assert a != parse_url("s3://bucket/one").cache_dir()
    # A relative XDG_CACHE_HOME is ignored (XDG base directory specification).
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")
    assert cache_home() == Path.home() / ".cache" / "rustybackup"


def test_cli_takes_a_url_and_names_a_bad_one(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(cli, ["--repo", "s3://Bad_Bucket/x", "list"])
    assert bad.exit_code == 2 and "not a valid bucket name" in bad.output
    # A command that needs a local directory says so instead of using ./s3:/...
    local_only = runner.invoke(cli, ["--repo", "s3://bucket/x", "metrics"])
    assert local_only.exit_code == 2 and "needs a local repository directory" in local_only.output
    # The scheduler's commands also say how a job writes to a bucket instead.
    jobs = runner.invoke(cli, ["--repo", "s3://bucket/x", "job", "list"])
    assert jobs.exit_code == 2 and "beside a local repository" in jobs.output and "--target" in jobs.output
    assert not (Path.cwd() / "s3:").exists()
