"""What a request asks for, and adding `stream_options.include_usage` to it.

Azure sends token usage on a stream only when the request asks for it. To count tokens exactly,
the proxy asks on the client's behalf and later removes the extra usage chunk from what the
client receives (`proxy.relay.usage_strip`). Older api-versions reject the option with a 400
(docs/chat-wire.md §1); the proxy then retries without it and remembers not to ask that
deployment/api-version again.
"""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

_MAX_REMEMBERED = 4096


@dataclass(frozen=True, slots=True)
class Intent:
    """What the client's request body says about the response it expects."""

    stream: bool = False
    model: str | None = None
    wants_usage: bool = False
    """The client itself set `stream_options.include_usage: true`."""
    body: dict[str, Any] | None = None
    """The parsed JSON body, kept only when the proxy may need to rewrite it."""
    raw: bytes = b""
    """The body as sent, kept with `body`."""


def read_intent(body: bytes, *, need_model: bool) -> Intent:
    """Parse only what is needed: a body without `"stream"` in it is not a stream request."""
    if not body or (not need_model and b'"stream"' not in body):
        return Intent()
    try:
        parsed = json.loads(body)
    except (ValueError, RecursionError):
        return Intent()  # not ours to judge: the upstream answers invalid JSON itself
    if not isinstance(parsed, dict):
        return Intent()
    model = parsed.get("model")
    options = parsed.get("stream_options")
    wants_usage = isinstance(options, dict) and options.get("include_usage") is True
    stream = parsed.get("stream") is True
    rewritable = stream and not wants_usage
    return Intent(stream=stream, model=model if isinstance(model, str) else None,
                  wants_usage=wants_usage, body=parsed if rewritable else None,
                  raw=body if rewritable else b"")


_USAGE_MEMBER = b'"stream_options":{"include_usage":true},'
_JSON_SPACE = b" \t\r\n"


def with_usage(intent: Intent) -> bytes | None:
    """The body with `include_usage: true` added, or None when it cannot be added.

    Without `stream_options` in the body (the usual case) the member is inserted right after
    the opening brace: every byte the client wrote stays as it was (numbers, escapes, key
    order), and nothing is re-encoded. Otherwise the body is re-encoded with it merged in.
    """
    if intent.body is None:
        return None
    options = intent.body.get("stream_options")
    if "stream_options" not in intent.body:
        inserted = _insert_member(intent.raw)
        if inserted is not None:
            return inserted
    elif options is not None and not isinstance(options, dict):
        return None
    merged = dict(intent.body)
    merged["stream_options"] = {**(options or {}), "include_usage": True}
    return json.dumps(merged, ensure_ascii=False, separators=(",", ":")).encode()


def _insert_member(raw: bytes) -> bytes | None:
    """`raw` (a non-empty JSON object) with the usage member first, if it is plain UTF-8."""
    start = len(raw) - len(raw.lstrip(_JSON_SPACE))
    # UTF-16/32 bodies (json.loads accepts them) and a UTF-8 BOM are re-encoded instead.
    if raw[start:start + 1] != b"{" or json.detect_encoding(raw) != "utf-8":
        return None
    return raw[:start + 1] + _USAGE_MEMBER + raw[start + 1:]


def rejects_stream_options(status: int, body: bytes) -> bool:
    """An old api-version's 400 that names the option we added."""
    return status == 400 and b"stream_options" in body


class RejectionMemory:
    """Deployment/api-version pairs known to reject `stream_options` (bounded, oldest dropped)."""

    def __init__(self, limit: int = _MAX_REMEMBERED) -> None:
        self._seen: OrderedDict[tuple[str, str, str], None] = OrderedDict()
        self._limit = limit

    def __contains__(self, key: tuple[str, str, str]) -> bool:
        return key in self._seen

    def add(self, key: tuple[str, str, str]) -> None:
        self._seen[key] = None
        self._seen.move_to_end(key)
        while len(self._seen) > self._limit:
            self._seen.popitem(last=False)
