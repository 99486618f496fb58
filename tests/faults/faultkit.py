"""Building blocks of the fault-injection suite (plain helpers; the fixtures are in conftest).

- `RawUpstream`: an upstream on bare asyncio streams that answers each request with a script
  and records, per connection, what arrived and when the peer closed it. Scripts misbehave on
  purpose: stall, reset, send malformed framing, invalid status lines.
- `RawClient` / `raw_exchange`: an HTTP/1.1 client on bare sockets, for what aiohttp's client
  would refuse to send (absolute-form targets, trickled headers) or hide (how a body ended).
- `ProxyProcess`: the proxy as a real `python -m proxy --config X` process.
- Probes: open file descriptors, tasks, metric samples, Azure error shape.

Every wait here is bounded in time and every loop in count.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import signal
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import psutil
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).parents[2]
API_VERSION = "2024-10-21"
CHAT_PATH = f"/openai/deployments/gpt-4o/chat/completions?api-version={API_VERSION}"
STREAM_BODY = b'{"messages":[{"role":"user","content":"hi"}],"stream":true}'
"""A stream request that does not ask for usage: the proxy adds the option itself."""
STREAM_BODY_WITH_USAGE = (b'{"messages":[{"role":"user","content":"hi"}],"stream":true,'
                          b'"stream_options":{"include_usage":true}}')
"""A stream request that asks for usage: the proxy leaves the body and the bytes alone."""
SSE_HEADERS = (("Content-Type", "text/event-stream; charset=utf-8"),
               ("apim-request-id", "fault-test"))
MAX_HEAD = 64 * 1024
FLUSH_WAIT = 30.0
"""How long a cleanly closed upstream connection may take to deliver what it still holds."""
DONE = b"data: [DONE]\n\n"


def now() -> float:
    return time.perf_counter()


def hold_the_loop(seconds: float) -> None:
    """Block the event loop (on purpose): what the kernel delivers meanwhile is seen by the
    loop's next poll all at once, which fixes the order of callbacks a test depends on."""
    time.sleep(seconds)


def chunk_event(i: int, *, content: str | None = None, finish: str | None = None) -> bytes:
    """One Azure-like chat completion chunk as a complete SSE event."""
    delta = {} if finish else {"content": content if content is not None else f"w{i} "}
    obj = {"choices": [{"content_filter_results": {}, "delta": delta, "finish_reason": finish,
                        "index": 0, "logprobs": None}],
           "created": 1700000000, "id": "chatcmpl-fault", "model": "gpt-4o-2024-08-06",
           "object": "chat.completion.chunk", "system_fingerprint": "fp_fault"}
    return b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"


def healthy_stream(tokens: int = 12) -> bytes:
    """A complete, well-formed stream: content chunks, a `stop` finish, `[DONE]`."""
    return b"".join(chunk_event(i) for i in range(tokens)) + chunk_event(
        tokens, finish="stop") + DONE


async def eventually(predicate: Callable[[], bool], *, timeout: float = 5.0,
                     interval: float = 0.01) -> bool:
    """Poll `predicate` until it holds or `timeout` passes; returns its last value."""
    deadline = now() + timeout
    for _ in range(int(timeout / interval) + 2):
        if predicate():
            return True
        if now() >= deadline:
            break
        await asyncio.sleep(interval)
    return predicate()


# ---------------------------------------------------------------------------------------------
# Raw upstream
# ---------------------------------------------------------------------------------------------


@dataclass
class RawRequest:
    """One request as a raw upstream received it."""

    method: str
    target: bytes
    version: bytes
    headers: list[tuple[str, str]]
    body: bytes
    conn: UpstreamConn
    received_at: float

    def header(self, name: str) -> str | None:
        lower = name.lower()
        return next((v for k, v in self.headers if k.lower() == lower), None)


class UpstreamConn:
    """One connection to a raw upstream: a buffered reader, framing writers, close records."""

    def __init__(self, number: int, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.number = number
        self.opened_at = now()
        self.closed_at: float | None = None
        """When the peer's end of the connection was seen (EOF, reset) or we closed it."""
        self.peer_closed = asyncio.Event()
        self.sent = 0
        """Bytes written to the peer (what the kernel accepted; drained writes)."""
        self.last_request = False
        """The request being answered is the connection's last: `send_head` says so."""
        self._reader = reader
        self._writer = writer
        self._buf = bytearray()
        self._data = asyncio.Event()
        self._pump_task = asyncio.create_task(self._pump())

    @property
    def closed(self) -> bool:
        return self.peer_closed.is_set()

    async def _pump(self) -> None:
        try:
            for _ in range(10_000_000):
                data = await self._reader.read(65536)
                if not data:
                    break
                self._buf += data
                self._data.set()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            self._mark_closed()

    def _mark_closed(self) -> None:
        if self.closed_at is None:
            self.closed_at = now()
        self.peer_closed.set()
        self._data.set()

    async def _wait_data(self, timeout: float) -> bool:
        self._data.clear()
        if self.closed:
            return False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self._data.wait()
        return bool(self._buf) or not self.closed

    async def read_until(self, sep: bytes, *, limit: int = MAX_HEAD,
                         timeout: float = 30.0) -> bytes | None:
        deadline = now() + timeout
        for _ in range(100_000):
            at = self._buf.find(sep)
            if at >= 0:
                out = bytes(self._buf[: at + len(sep)])
                del self._buf[: at + len(sep)]
                return out
            if len(self._buf) > limit or self.closed or now() >= deadline:
                return None
            await self._wait_data(deadline - now())
        return None

    async def read_exactly(self, n: int, *, timeout: float = 30.0) -> bytes | None:
        deadline = now() + timeout
        for _ in range(1_000_000):
            if len(self._buf) >= n:
                out = bytes(self._buf[:n])
                del self._buf[:n]
                return out
            if self.closed or now() >= deadline:
                return None
            await self._wait_data(deadline - now())
        return None

    # -- writing ------------------------------------------------------------------------------

    async def send(self, data: bytes) -> bool:
        """Write and drain; False once the peer is gone."""
        if self.closed or self._writer.is_closing():
            return False
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (ConnectionError, OSError):
            self._mark_closed()
            return False
        self.sent += len(data)
        return True

    def write_nowait(self, data: bytes) -> None:
        """Hand `data` to the kernel now, without yielding to the event loop."""
        self._writer.write(data)
        self.sent += len(data)

    async def send_head(self, status: int | bytes = 200,
                        headers: Iterable[tuple[str, str]] = SSE_HEADERS, *,
                        chunked: bool = True, reason: bytes = b"OK") -> bool:
        code = status if isinstance(status, bytes) else str(status).encode()
        lines = [b"HTTP/1.1 " + code + b" " + reason]
        headers = list(headers)
        lines += [f"{k}: {v}".encode("latin-1") for k, v in headers]
        if self.last_request and all(k.lower() != "connection" for k, _ in headers):
            # A server that closes after this response announces it (RFC 9112 9.6); unannounced,
            # the proxy may already have sent the next request on the connection, and a proxy
            # must not retry a POST by itself (RFC 9110 9.2.2), so that request would fail.
            lines.append(b"Connection: close")
        if chunked:
            lines.append(b"Transfer-Encoding: chunked")
        return await self.send(b"\r\n".join(lines) + b"\r\n\r\n")

    async def send_chunk(self, data: bytes) -> bool:
        if not data:
            return True
        return await self.send(b"%x\r\n" % len(data) + data + b"\r\n")

    async def end_chunks(self) -> bool:
        return await self.send(b"0\r\n\r\n")

    async def send_response(self, status: int, body: bytes,
                            headers: Iterable[tuple[str, str]] = (), *,
                            close: bool = False) -> bool:
        all_headers = [*headers, ("Content-Length", str(len(body)))]
        if close:
            all_headers.append(("Connection", "close"))
        ok = await self.send_head(status, all_headers, chunked=False) and await self.send(body)
        if close:
            self.close()
        return ok

    async def hold(self, seconds: float) -> bool:
        """Send nothing for up to `seconds`; True if the peer closed meanwhile."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self.peer_closed.wait()
        return self.closed

    def close(self) -> None:
        """End the connection cleanly (FIN)."""
        with contextlib.suppress(OSError, RuntimeError):
            self._writer.close()

    def reset(self) -> None:
        """End the connection with a TCP reset (SO_LINGER 0, then close)."""
        sock = self._writer.get_extra_info("socket")
        with contextlib.suppress(OSError):
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self._writer.transport.abort()

    async def finish(self) -> None:
        """Stop reading; wait (bounded) for the reader task.

        After a clean `close()` the transport may still hold up to a high-water mark of
        written bytes: they are let out first (bounded), or the close would turn into a
        truncation the proxy rightly reports as a reset.
        """
        if self._writer.is_closing():
            with contextlib.suppress(OSError, TimeoutError, ConnectionError):
                async with asyncio.timeout(FLUSH_WAIT):
                    await self._writer.wait_closed()
        self._writer.transport.abort()
        self._pump_task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._pump_task
        self._mark_closed()


Script = Callable[[RawRequest], Awaitable[None]]
"""Answers one request: writes a response through `request.conn`, or misbehaves."""


def _parse_head(head: bytes) -> tuple[bytes, bytes, bytes, list[tuple[str, str]]] | None:
    lines = head[:-4].split(b"\r\n")
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        return None
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.decode("latin-1").strip(), value.decode("latin-1").strip()))
    return parts[0], parts[1], parts[2], headers


async def _read_body(conn: UpstreamConn, headers: list[tuple[str, str]]) -> bytes | None:
    values = {k.lower(): v for k, v in headers}
    if values.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        for _ in range(1_000_000):
            size_line = await conn.read_until(b"\r\n")
            if size_line is None:
                return None
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                await conn.read_until(b"\r\n")
                return bytes(body)
            data = await conn.read_exactly(size + 2)
            if data is None:
                return None
            body += data[:-2]
        return None
    length = int(values.get("content-length", "0") or 0)
    return await conn.read_exactly(length) if length else b""


class RawUpstream:
    """A scripted upstream on 127.0.0.1 that records connections and requests."""

    def __init__(self, script: Script, *, max_requests_per_conn: int = 1000) -> None:
        self.script = script
        self.conns: list[UpstreamConn] = []
        self.requests: list[RawRequest] = []
        self._max_requests = max_requests_per_conn
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> RawUpstream:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = UpstreamConn(len(self.conns), reader, writer)
        self.conns.append(conn)
        try:
            for number in range(1, self._max_requests + 1):
                conn.last_request = number == self._max_requests
                head = await conn.read_until(b"\r\n\r\n")
                if head is None:
                    break
                parsed = _parse_head(head)
                if parsed is None:
                    break
                method, target, version, headers = parsed
                body = await _read_body(conn, headers)
                if body is None:
                    break
                request = RawRequest(method.decode("latin-1"), target, version, headers, body,
                                     conn, now())
                self.requests.append(request)
                await self.script(request)
                if conn.closed or writer.is_closing():
                    break
        except (ConnectionError, OSError):
            pass
        finally:
            await conn.finish()
            self._tasks.discard(task)

    async def wait_requests(self, n: int, timeout: float = 5.0) -> bool:
        return await eventually(lambda: len(self.requests) >= n, timeout=timeout)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for conn in self.conns:
            if not conn.closed:
                conn.reset()
        tasks = list(self._tasks)
        if tasks:
            await asyncio.wait(tasks, timeout=5)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()


async def answer_ok(request: RawRequest) -> None:
    """A plain, well-behaved answer (used by canaries and healthy paths)."""
    await request.conn.send_response(200, b'{"ok":true}', [("Content-Type", "application/json")])


# ---------------------------------------------------------------------------------------------
# Raw client
# ---------------------------------------------------------------------------------------------


@dataclass
class ParsedResponse:
    """An HTTP/1.1 response parsed incrementally; `body` grows as data arrives."""

    status: int | None = None
    reason: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    complete: bool = False
    """The body's framing ended it properly (Content-Length reached, chunked 0-chunk)."""
    raw: bytearray = field(default_factory=bytearray)
    keep: bool = True
    """False: count and hash the body (`received`, `digest`) without keeping it."""
    received: int = 0
    digest: Any = field(default_factory=hashlib.sha256)
    _buf: bytearray = field(default_factory=bytearray)
    _mode: str = "head"
    _left: int = 0

    def header(self, name: str) -> str | None:
        lower = name.lower()
        return next((v for k, v in self.headers if k.lower() == lower), None)

    def json(self) -> Any:
        return json.loads(bytes(self.body))

    def feed(self, data: bytes) -> None:
        if self.keep:
            self.raw += data
        self._buf += data
        for _ in range(1_000_000):
            if not self._step():
                return

    def _step(self) -> bool:
        buf = self._buf
        if self._mode == "head":
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return False
            lines = bytes(buf[:end]).split(b"\r\n")
            del buf[: end + 4]
            _, _, rest = lines[0].partition(b" ")
            code, _, self.reason = rest.partition(b" ")
            self.status = int(code)
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                self.headers.append((name.decode("latin-1").strip(),
                                     value.decode("latin-1").strip()))
            if self.status in (204, 304) or 100 <= self.status < 200:
                self._mode, self.complete = "done", True
            elif (self.header("Transfer-Encoding") or "").lower() == "chunked":
                self._mode = "size"
            elif self.header("Content-Length") is not None:
                self._left = int(self.header("Content-Length") or 0)
                self._mode = "length"
                self.complete = self._left == 0
            else:
                self._mode = "close"
            return True
        if self._mode == "length":
            take = bytes(buf[: self._left])
            del buf[: len(take)]
            self._take(take)
            self._left -= len(take)
            if self._left == 0:
                self._mode, self.complete = "done", True
            return False
        if self._mode == "close":
            self._take(bytes(buf))
            buf.clear()
            return False
        if self._mode == "size":
            end = buf.find(b"\r\n")
            if end < 0:
                return False
            size = int(bytes(buf[:end]).split(b";")[0].strip() or b"0", 16)
            del buf[: end + 2]
            self._left = size
            self._mode = "data" if size else "trailer"
            return True
        if self._mode == "data":
            take = bytes(buf[: self._left])
            del buf[: len(take)]
            self._take(take)  # partial chunk data counts: it reached the client
            self._left -= len(take)
            if self._left == 0:
                self._mode = "crlf"
                return True
            return False
        if self._mode == "crlf":
            if len(buf) < 2:
                return False
            del buf[:2]
            self._mode = "size"
            return True
        if self._mode == "trailer":
            end = buf.find(b"\r\n")
            if end < 0:
                return False
            del buf[: end + 2]
            if end == 0:
                self._mode, self.complete = "done", True
                return False
            return True
        return False

    def _take(self, data: bytes) -> None:
        self.received += len(data)
        self.digest.update(data)
        if self.keep:
            self.body += data


class RawClient:
    """One client connection on a bare socket."""

    live: ClassVar[set[RawClient]] = set()
    """Connections not closed yet: the suite's teardown aborts them (a failed assertion must
    not leave a transport to be collected after its loop closed)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        RawClient.live.add(self)
        self.reader = reader
        self.writer = writer
        self.response = ParsedResponse()
        self.eof = False
        self.eof_at: float | None = None

    @classmethod
    async def connect(cls, port: int, *, rcvbuf: int | None = None) -> RawClient:
        if rcvbuf is None:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
            sock.setblocking(False)
            try:
                await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
            except OSError:
                sock.close()
                raise
            reader, writer = await asyncio.open_connection(sock=sock, limit=rcvbuf)
        return cls(reader, writer)

    async def send(self, data: bytes) -> bool:
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError):
            return False
        return True

    async def read_some(self, timeout: float, n: int = 65536) -> bytes:
        """One read; b"" on EOF, on a reset or when nothing arrived in time."""
        if self.eof:
            return b""
        try:
            async with asyncio.timeout(timeout):
                data = await self.reader.read(n)
        except TimeoutError:
            return b""
        except (ConnectionError, OSError):
            data = b""
        if not data:
            self.eof, self.eof_at = True, now()
        else:
            self.response.feed(data)
        return data

    async def read_until(self, predicate: Callable[[ParsedResponse], bool], *,
                         timeout: float = 5.0) -> bool:
        """Read until `predicate(response)`, EOF or `timeout`; returns the predicate."""
        deadline = now() + timeout
        for _ in range(1_000_000):
            if predicate(self.response):
                return True
            left = deadline - now()
            if self.eof or left <= 0:
                break
            await self.read_some(left)
        return predicate(self.response)

    async def read_to_end(self, timeout: float = 5.0) -> bool:
        """Read until the body is complete or the connection ends; True if it ended in time."""
        return await self.read_until(lambda r: r.complete or self.eof, timeout=timeout)

    def close(self) -> None:
        RawClient.live.discard(self)
        with contextlib.suppress(OSError, RuntimeError):
            self.writer.close()

    def abort(self) -> None:
        """Hang up with a TCP reset."""
        RawClient.live.discard(self)
        sock = self.writer.get_extra_info("socket")
        with contextlib.suppress(OSError):
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def aclose(self) -> None:
        self.close()
        with contextlib.suppress(OSError, TimeoutError, ConnectionError):
            async with asyncio.timeout(2):
                await self.writer.wait_closed()


def request_bytes(method: str, target: bytes | str, *, body: bytes = b"",
                  headers: Iterable[tuple[str, str]] = (), host: str = "proxy.test",
                  close: bool = True) -> bytes:
    """An HTTP/1.1 request as bytes; Content-Length is added for a body."""
    raw_target = target.encode("latin-1") if isinstance(target, str) else target
    lines = [method.encode() + b" " + raw_target + b" HTTP/1.1", f"Host: {host}".encode()]
    lines += [f"{k}: {v}".encode("latin-1") for k, v in headers]
    if body:
        lines.append(f"Content-Length: {len(body)}".encode())
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


async def raw_exchange(port: int, data: bytes, *, timeout: float = 10.0) -> RawClient:
    """Send `data` on a new connection and read the response to its end."""
    client = await RawClient.connect(port)
    try:
        await client.send(data)
        await client.read_to_end(timeout)
    finally:
        await client.aclose()
    return client


async def refused(port: int) -> bool:
    """Whether a new connection to `port` is refused (a draining proxy has stopped listening)."""
    try:
        client = await RawClient.connect(port)
    except ConnectionRefusedError:
        return True
    await client.aclose()
    return False


# ---------------------------------------------------------------------------------------------
# Probes
# ---------------------------------------------------------------------------------------------


def open_fds(pid: int | None = None) -> int:
    """Open file descriptors of this process (or `pid`)."""
    return len(os.listdir(f"/proc/{pid or 'self'}/fd"))


def rss(pid: int | None = None) -> int:
    return int(psutil.Process(pid or os.getpid()).memory_info().rss)


def total(registry: CollectorRegistry | None, name: str, **labels: str) -> float:
    """Sum of every sample called `name` whose labels include `labels`."""
    assert registry is not None
    found = 0.0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v
                                           for k, v in labels.items()):
                found += sample.value
    return found


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse_exposition(text: str) -> Samples:
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sum_samples(samples: Samples, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items()
               if n == name and all((k, val) in ls for k, val in labels.items()))


def assert_azure_error(status: int | None, content_type: str | None, body: bytes,
                       expected: int) -> dict[str, Any]:
    """The proxy's own error: `expected` status, JSON `{"error": {"code", "message"}}`."""
    assert status == expected, (status, body[:300])
    assert content_type is not None and content_type.startswith("application/json"), content_type
    parsed = json.loads(body)
    assert isinstance(parsed, dict) and set(parsed) == {"error"}, parsed
    error = parsed["error"]
    assert isinstance(error.get("code"), str) and error["code"], parsed
    assert isinstance(error.get("message"), str) and error["message"], parsed
    return error  # type: ignore[no-any-return]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# The proxy as a process
# ---------------------------------------------------------------------------------------------


class ProxyProcess:
    """`python -m proxy --config PATH` with its output collected as it is written."""

    def __init__(self, config_path: Path, env: dict[str, str], port: int) -> None:
        self.config_path = config_path
        self.env = env
        self.port = port
        self.process: asyncio.subprocess.Process | None = None
        self.stdout = bytearray()
        self.stderr = bytearray()
        self._readers: list[asyncio.Task[None]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        return None if self.process is None else self.process.returncode

    async def start(self, *args: str) -> ProxyProcess:
        base_env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_OPENAI")}
        self.process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "proxy", "--config", str(self.config_path), *args,
            cwd=ROOT, env={**base_env, **self.env},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        assert self.process.stdout is not None and self.process.stderr is not None
        self._readers = [asyncio.create_task(_collect(self.process.stdout, self.stdout)),
                         asyncio.create_task(_collect(self.process.stderr, self.stderr))]
        return self

    async def wait_ready(self, path: str = "/healthz", timeout: float = 20.0,
                         port: int | None = None) -> None:
        """Until `path` answers 200 on `port` (default: the proxy's), or fail with the output
        of a process that died."""
        deadline = now() + timeout
        request = request_bytes("GET", path)
        for _ in range(int(timeout / 0.05) + 1):
            if self.returncode is not None:
                raise AssertionError(f"proxy exited {self.returncode}: {self.output()}")
            with contextlib.suppress(OSError):
                client = await raw_exchange(port or self.port, request, timeout=2)
                if client.response.status == 200:
                    return
            if now() >= deadline:
                break
            await asyncio.sleep(0.05)
        raise AssertionError(f"proxy not ready in {timeout} s: {self.output()}")

    def send_signal(self, sig: int = signal.SIGTERM) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(sig)

    async def wait_exit(self, timeout: float) -> int | None:
        assert self.process is not None
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                await self.process.wait()
        return self.process.returncode

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL after a bounded wait; collect the rest of the output."""
        if self.process is None:
            return
        if self.process.returncode is None:
            self.send_signal(signal.SIGTERM)
            if await self.wait_exit(10) is None:
                self.process.kill()
                await self.wait_exit(10)
        if self._readers:
            await asyncio.wait(self._readers, timeout=5)
        for task in self._readers:
            task.cancel()

    def output(self) -> str:
        return (bytes(self.stdout) + b"\n--- stderr ---\n" + bytes(self.stderr)).decode(
            "utf-8", "replace")[-4000:]


async def _collect(stream: asyncio.StreamReader, into: bytearray) -> None:
    for _ in range(10_000_000):
        data = await stream.read(65536)
        if not data:
            return
        into += data


def yaml_config(upstreams: list[dict[str, Any]], port: int, **sections: Any) -> str:
    """A config file's text (JSON is YAML) for a proxy process on `port`."""
    body: dict[str, Any] = {"listen": {"host": "127.0.0.1", "port": port},
                            "upstreams": upstreams, **sections}
    # No load balancer waits on these proxies: stop at once unless a test says otherwise.
    body.setdefault("shutdown", {"grace": 0, "drain_timeout": 2})
    return json.dumps(body, indent=2)


async def scrape(port: int, path: str = "/metrics",
                 headers: Iterable[tuple[str, str]] = ()) -> tuple[int | None, str]:
    client = await raw_exchange(port, request_bytes("GET", path, headers=headers))
    return client.response.status, bytes(client.response.body).decode("utf-8", "replace")


async def wait_fds(pid: int | None, baseline: int, *, timeout: float = 10.0) -> int:
    """Wait for the fd count to come back to `baseline` or below; returns the last count."""
    await eventually(lambda: open_fds(pid) <= baseline, timeout=timeout, interval=0.05)
    return open_fds(pid)


def describe_tasks(tasks: Iterable[asyncio.Task[Any]]) -> str:
    return "\n".join(repr(t.get_coro()) for t in tasks)[:3000]


def monotonic_ms(start: float) -> float:
    return round((now() - start) * 1000, 1)


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def query_value(target: bytes, name: str) -> str | None:
    """A query parameter's raw value from a request target (no decoding)."""
    _, _, query = target.decode("latin-1").partition("?")
    for pair in query.split("&"):
        key, _, value = pair.partition("=")
        if key == name:
            return value
    return None
