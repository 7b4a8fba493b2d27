"""``rustybackup hash``: file digests in the ``sha256sum``/``b3sum`` line format.

``HEX  NAME`` per file (two spaces: GNU coreutils' text-mode separator, which b3sum also
prints). A name holding a backslash or a newline is written escaped with the line prefixed
by ``\\``, as GNU coreutils does, so every name round-trips through ``--check``.
"""

from __future__ import annotations

import logging
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

import click

from .._core import hash_file, hash_files, scan_file
from ..enums import ChecksumAlgorithm
from .context import print_json

log = logging.getLogger(__name__)

DIGEST_HEX_LEN = {"md5": 32, "sha1": 40, "sha256": 64, "sha512": 128, "blake3": 64}


def escape_name(name: str) -> tuple[str, str]:
    """(prefix, name) as GNU sha256sum writes them: `\\` prefix when escaping was needed."""
    if "\\" not in name and "\n" not in name and "\r" not in name:
        return "", name
    return "\\", name.replace("\\", "\\\\").replace("\n", "\\n").replace("\r", "\\r")


def unescape_name(name: str) -> str | None:
    """The inverse of `escape_name`; None for an escape GNU never writes."""
    out: list[str] = []
    chars = iter(name)
    for ch in chars:
        if ch != "\\":
            out.append(ch)
            continue
        nxt = next(chars, "")
        mapped = {"\\": "\\", "n": "\n", "r": "\r"}.get(nxt)
        if mapped is None:
            return None
        out.append(mapped)
    return "".join(out)


def sum_line(digest: str, name: str) -> str:
    """One output line, without the newline."""
    prefix, shown = escape_name(name)
    return f"{prefix}{digest}  {shown}"


@dataclass(frozen=True)
class SumEntry:
    """One parsed line of a checksum list."""

    line_no: int
    digest: str
    name: str


def parse_sums(text: str, algorithm: str) -> tuple[list[SumEntry], list[int]]:
    """Entries, and the numbers of the lines that are not `HEX  NAME` / `HEX *NAME` with a
    digest of the algorithm's length. Blank lines and `#` comments are skipped."""
    want_len = DIGEST_HEX_LEN[algorithm]
    entries: list[SumEntry] = []
    bad: list[int] = []
    # Only "\n" ends a line: str.splitlines() would also split names at \x1c-\x1e, \x85...
    for line_no, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip() or raw.startswith("#"):
            continue
        escaped = raw.startswith("\\")
        line = raw[1:] if escaped else raw
        digest, sep, rest = line[:want_len], line[want_len : want_len + 2], line[want_len + 2 :]
        name: str | None = rest
        if escaped:
            name = unescape_name(rest)
        if (
            len(digest) != want_len
            or any(c not in "0123456789abcdefABCDEF" for c in digest)
            or sep not in ("  ", " *")
            or not name
        ):
            bad.append(line_no)
            continue
        entries.append(SumEntry(line_no, digest.lower(), name))
    return entries, bad


@dataclass(frozen=True)
class CheckResult:
    """The outcome for one listed file."""

    path: str
    status: str  # "OK", "FAILED" or "FAILED open or read"
    expected: str
    actual: str | None
    error: str | None


def run_check(sums: Path, algorithm: str, *, quiet: bool, as_json: bool) -> int:
    """Verifies a checksum list; the exit code (0 all OK, 1 anything wrong)."""
    text = sys.stdin.read() if str(sums) == "-" else sums.read_text(encoding="utf-8", errors="surrogateescape")
    entries, bad = parse_sums(text, algorithm)
    for line_no in bad:
        click.echo(f"rustybackup: {sums}: line {line_no}: improperly formatted {algorithm} checksum line", err=True)
    if not entries and not bad:
        click.echo(f"rustybackup: {sums}: no properly formatted {algorithm} checksum lines found", err=True)
        return 1
    digests = hash_files([e.name for e in entries], algorithm)
    results: list[CheckResult] = []
    for entry in entries:
        got = digests[entry.name]
        if isinstance(got, Exception):
            results.append(CheckResult(entry.name, "FAILED open or read", entry.digest, None, str(got)))
        elif got == entry.digest:
            results.append(CheckResult(entry.name, "OK", entry.digest, got, None))
        else:
            results.append(CheckResult(entry.name, "FAILED", entry.digest, got, None))
    failed = sum(r.status == "FAILED" for r in results)
    unreadable = sum(r.status == "FAILED open or read" for r in results)
    if as_json:
        print_json({"ok": not (failed or unreadable or bad), "bad_lines": bad, "files": [asdict(r) for r in results]})
    else:
        for r in results:
            if r.error is not None:
                click.echo(f"rustybackup: {r.error}", err=True)
            if r.status != "OK" or not quiet:
                click.echo(f"{escape_name(r.path)[1]}: {r.status}")
        # GNU sha256sum's summary wording, so people and scripts recognise it.
        if bad:
            click.echo(
                f"rustybackup: WARNING: {_plural(len(bad), 'line is', 'lines are')} improperly formatted", err=True
            )
        if unreadable:
            click.echo(
                f"rustybackup: WARNING: {_plural(unreadable, 'listed file', 'listed files')} could not be read",
                err=True,
            )
        if failed:
            click.echo(
                f"rustybackup: WARNING: {_plural(failed, 'computed checksum', 'computed checksums')} did NOT match",
                err=True,
            )
    return 1 if failed or unreadable or bad else 0


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def run_hash(files: tuple[Path, ...], algorithm: str, *, mmap: bool, as_json: bool) -> int:
    """Prints one line per file; unreadable files go to stderr and make the exit code 1."""
    if len(files) == 1:
        # One file: the whole machine works on it (BLAKE3 spreads over every core).
        try:
            results: dict[str, str | Exception] = {str(files[0]): hash_file(files[0], algorithm, mmap=mmap)}
        except OSError as exc:
            results = {str(files[0]): exc}
    else:
        results = hash_files(files, algorithm)
    code = 0
    rows = []
    for name, got in results.items():
        if isinstance(got, Exception):
            click.echo(f"rustybackup: {got}", err=True)
            rows.append({"path": name, "digest": None, "error": str(got)})
            code = 1
        else:
            rows.append({"path": name, "digest": got, "error": None})
            if not as_json:
                click.echo(sum_line(got, name))
    if as_json:
        print_json({"algorithm": algorithm, "files": rows})
    return code


def run_blocks(files: tuple[Path, ...], algorithm: str, block_size: int, *, as_json: bool) -> int:
    """Per file: the whole-file line, then `index<TAB>offset<TAB>digest` per block."""
    code = 0
    docs = []
    for path in files:
        try:
            scan = scan_file(path, algorithm, block_size)
        except OSError as exc:
            click.echo(f"rustybackup: {exc}", err=True)
            code = 1
            continue
        digests = [scan.block_digest(i) for i in range(scan.block_count)]
        if as_json:
            docs.append(
                {
                    "path": str(path),
                    "algorithm": scan.algorithm,
                    "digest": scan.digest,
                    "size": scan.size,
                    "block_size": scan.block_size,
                    "blocks": digests,
                }
            )
            continue
        click.echo(sum_line(scan.digest, str(path)))
        click.echo(
            f"# {scan.block_count} blocks of {scan.block_size} bytes ({scan.size} bytes): index, offset, {algorithm}"
        )
        for i, digest in enumerate(digests):
            click.echo(f"{i}\t{i * scan.block_size}\t{digest}")
    if as_json:
        print_json(docs)
    return code


@click.command("hash")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@click.option(
    "-a",
    "--algorithm",
    type=click.Choice([a.value for a in ChecksumAlgorithm], case_sensitive=False),
    default=ChecksumAlgorithm.BLAKE3.value,
    show_default=True,
    help="Digest algorithm.",
)
@click.option(
    "-c",
    "--check",
    "sums",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    default=None,
    help="Verify the files listed in SUMS (lines `HEX  NAME`); '-' reads stdin.",
)
@click.option("--quiet", is_flag=True, help="With --check: print only failures.")
@click.option("--blocks", is_flag=True, help="Also print every block's digest.")
@click.option(
    "--block-size",
    type=int,
    default=8192,
    show_default=True,
    help="Block size for --blocks (power of two, 512 B-16 MiB).",
)
@click.option(
    "--mmap/--no-mmap",
    default=False,
    show_default=True,
    help="Memory-map a single BLAKE3 file instead of reading it: faster on big page-cached files, but a file "
    "truncated meanwhile kills the process (SIGBUS); never for files being written.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
@click.pass_context
def hash_command(
    ctx: click.Context,
    files: tuple[Path, ...],
    algorithm: str,
    sums: Path | None,
    quiet: bool,
    blocks: bool,
    block_size: int,
    mmap: bool,
    as_json: bool,
) -> None:
    """Print or check file digests (sha256sum/b3sum format).

    Examples: rustybackup hash data.db; rustybackup hash -a sha256 *.piece > SUMS;
    rustybackup hash --check SUMS; rustybackup hash --blocks --block-size 4096 data.db
    """
    algorithm = algorithm.lower()
    if sums is not None:
        if files or blocks:
            raise click.UsageError("--check takes the file list from SUMS; give no FILE and no --blocks")
        ctx.exit(run_check(sums, algorithm, quiet=quiet, as_json=as_json))
    if not files:
        raise click.UsageError("give at least one FILE, or --check SUMS")
    if blocks:
        ctx.exit(run_blocks(files, algorithm, block_size, as_json=as_json))
    ctx.exit(run_hash(files, algorithm, mmap=mmap, as_json=as_json))


def register(group: click.Group) -> None:
    """Adds this module's commands to the top-level group."""
    group.add_command(hash_command)
