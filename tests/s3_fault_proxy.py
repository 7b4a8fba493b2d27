"""A TCP proxy on 127.0.0.1 in front of the test S3 server, for faults the real server
will not produce on demand: cut a connection after N request bytes, delay responses, flip
one request byte. Faults are armed for a number of connections, then the proxy passes
bytes through unchanged.

    with FaultProxy(server.s3_port) as proxy:
        proxy.cut_after(2 << 20, connections=1)   # the next connection dies mid-request
        store = ObjectStore(url, {..., "aws_endpoint_url": proxy.endpoint})
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from types import TracebackType

BUF = 64 * 1024


@dataclass
class _Fault:
    connections: int = 0
    cut_after: int | None = None
    delay: float = 0.0
    flip_at: int | None = None


class FaultProxy:
    """Forwards 127.0.0.1:<port> to 127.0.0.1:<target_port>, injecting armed faults."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._fault = _Fault()
        self._stopped = threading.Event()
        self._socks: set[socket.socket] = set()
        self.connections_seen = 0
        self.faults_fired = 0
        self.request_bytes = 0  # client-to-server bytes forwarded, over all connections
        self.response_bytes = 0  # server-to-client bytes forwarded, over all connections
        self._thread = threading.Thread(target=self._accept_loop, name="fault-proxy", daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def cut_after(self, nbytes: int, connections: int = 1) -> None:
        """The next `connections` connections are closed after `nbytes` request bytes."""
        with self._lock:
            self._fault = _Fault(connections=connections, cut_after=nbytes)

    def delay_responses(self, seconds: float, connections: int = 1) -> None:
        """The next `connections` connections hold each response chunk `seconds`."""
        with self._lock:
            self._fault = _Fault(connections=connections, delay=seconds)

    def flip_byte(self, offset: int, connections: int = 1) -> None:
        """The next `connections` connections have request byte `offset` inverted."""
        with self._lock:
            self._fault = _Fault(connections=connections, flip_at=offset)

    def clear(self) -> None:
        with self._lock:
            self._fault = _Fault()

    def _take_fault(self) -> _Fault:
        with self._lock:
            self.connections_seen += 1
            if self._fault.connections <= 0:
                return _Fault()
            self._fault.connections -= 1
            self.faults_fired += 1
            f = self._fault
            return _Fault(1, f.cut_after, f.delay, f.flip_at)

    def _accept_loop(self) -> None:
        while not self._stopped.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._stopped.is_set():
                client.close()
                return
            fault = self._take_fault()
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._socks.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, fault, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, fault, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, fault: _Fault, request: bool) -> None:
        moved = 0
        try:
            while True:
                data = src.recv(BUF)
                if not data:
                    break
                if request and fault.flip_at is not None and moved <= fault.flip_at < moved + len(data):
                    i = fault.flip_at - moved
                    data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1 :]
                if request and fault.cut_after is not None and moved + len(data) >= fault.cut_after:
                    dst.sendall(data[: fault.cut_after - moved])
                    break
                if not request and fault.delay:
                    self._stopped.wait(fault.delay)
                dst.sendall(data)
                moved += len(data)
                with self._lock:
                    if request:
                        self.request_bytes += len(data)
                    else:
                        self.response_bytes += len(data)
        except OSError:
            pass
        finally:
            # A cut closes both directions at once, as a dead peer or a dropped link would.
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
                with self._lock:
                    self._socks.discard(s)

    def close(self) -> None:
        self._stopped.set()
        # close() does not wake a thread blocked in accept(); a connection does.
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=5).close()
        except OSError:
            pass
        self._thread.join(timeout=10)
        self._listener.close()
        with self._lock:
            socks = list(self._socks)
        for s in socks:
            try:
                s.close()
            except OSError:
                pass

    def __enter__(self) -> FaultProxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
