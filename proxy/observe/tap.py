"""Taps: what the forwarder hands each sent piece to, feeding the right observer.

The one guard against observer bugs: the observers catch only decoding errors (and count
them); anything else they raise is a bug, which must never break a response. A tap logs the
first such exception once, counts it as one parse error and stops observing that response
(mitmproxy's `safecall` idea).
"""

from __future__ import annotations

import contextlib
import logging

from multidict import CIMultiDictProxy

from proxy.observe.observer import StreamObserver, observe_json
from proxy.observe.reading import Semantics
from proxy.observe.responses import RESPONSES
from proxy.observe.semantics import CHAT, Observation
from proxy.relay.headers import is_event_stream
from proxy.relay.operation import RESPONSES as RESPONSES_OPERATION
from proxy.relay.operation import Operation

log = logging.getLogger("aoai_stream_proxy")
_JSON_TYPES = ("application/json", "text/json")


class ResponseTap:
    """Sees a copy of each response piece; `finish()` says what the response meant."""

    __slots__ = ()  # one tap per response, alive as long as its stream: no instance dict

    def feed(self, data: bytes) -> None:
        """Nothing to learn from this response (audio, files, ...)."""

    def finish(self) -> Observation | None:
        return None


class StreamTap(ResponseTap):
    __slots__ = ("_broken", "_observer")

    def __init__(self, max_event_bytes: int, semantics: Semantics = CHAT) -> None:
        self._observer = StreamObserver(max_event_bytes=max_event_bytes, semantics=semantics)
        self._broken = False

    def feed(self, data: bytes) -> None:
        if self._broken:
            return
        try:
            self._observer.feed(data)
        except Exception:
            log.exception("stream observer failed; this response is no longer observed")
            self._broken = True

    def finish(self) -> Observation:
        if not self._broken:
            try:
                return self._observer.close()
            except Exception:
                log.exception("stream observer failed at the end of a response")
                self._broken = True
        observation = self._observer.observation
        observation.parse_errors += 1
        with contextlib.suppress(Exception):
            self._observer.release()
        return observation


class BodyTap(ResponseTap):
    """Collects a JSON body (up to a bound) and reads it once complete."""

    __slots__ = ("_encoding", "_max", "_parts", "_semantics", "_size")

    def __init__(self, content_encoding: str | None, max_bytes: int,
                 semantics: Semantics = CHAT) -> None:
        self._semantics = semantics
        self._parts: list[bytes] = []
        self._size = 0
        self._max = max_bytes
        self._encoding = content_encoding

    def feed(self, data: bytes) -> None:
        self._size += len(data)
        if self._size <= self._max:
            self._parts.append(data)
        else:
            self._parts.clear()  # too large to read; the body was still forwarded whole

    def finish(self) -> Observation | None:
        if self._size > self._max:
            return None
        try:
            return observe_json(b"".join(self._parts), self._encoding, max_bytes=self._max,
                                semantics=self._semantics)
        except Exception:
            log.exception("body observer failed; this response is not observed")
            return Observation(parse_errors=1)


def tap_for(headers: CIMultiDictProxy[str], *, operation: Operation = "other",
            max_event_bytes: int, max_body_bytes: int = 8 << 20) -> ResponseTap:
    """The tap for a response to `operation`: the Responses API is read by its own semantics,
    everything else as chat completions (whose reading also covers completions and embeddings)."""
    semantics = RESPONSES if operation == RESPONSES_OPERATION else CHAT
    if is_event_stream(headers):
        return StreamTap(max_event_bytes, semantics)
    content_type = headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
    if content_type in _JSON_TYPES:
        return BodyTap(headers.get("Content-Encoding"), max_body_bytes, semantics)
    return ResponseTap()
