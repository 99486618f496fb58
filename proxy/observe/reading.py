"""What an observer needs from the semantics of one API: the chat-completion and Responses
modules (`proxy.observe.semantics`, `proxy.observe.responses`) each provide a `Semantics`.

`StreamObserver` and `observe_json` decide which bytes to parse and when; a `Semantics` says
what a parsed JSON object means (it fills the `Observation`) and which objects may become byte
templates for the observer's fast path.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from proxy.observe.semantics import Observation

Matcher = Callable[..., Any]
"""`(data)` or `(buf, pos, endpos)` -> an `re.Match[bytes]`, or None."""


class EventTemplate(Protocol):
    """Bytes of an ordinary event with its variable parts cut out (see `Template`)."""

    fixed: tuple[bytes, ...]
    """The fixed texts a `payload` match must capture for it to count."""
    line_fixed: tuple[bytes, ...]
    """The same for a `line` match (for named events: the `event:` line first)."""
    deltas: int
    """Deltas with output in a matching event."""
    payload: Matcher
    """(data) -> match: an event's data (its `data:` lines joined), as dispatched."""
    line: Matcher
    """(buf, pos, endpos) -> match: `buf[pos:endpos]` is the rest of a framed event's one
    `data: ` line, or for an API with `named_events` the whole framed event (its `event:` line
    and one `data:` line); a match also proves the event has no other line."""
    framed_fixed: tuple[bytes, ...]
    """The fixed texts a `framed` or `framed_at` match must capture."""
    framed: Matcher
    """(buf[, pos, endpos]) -> match: `buf[pos:endpos]` is the whole event as `line` takes it
    and the "\\n\\n" that ends it: from an idle framer, exactly one framed event."""
    framed_at: Matcher
    """(buf, pos) -> match: the same from `pos` to the match's end."""

    def release(self) -> None:
        """The stream is over: drop whatever would keep the template in a reference cycle."""


class Semantics(Protocol):
    named_events: bool
    """Every event of a stream comes named: its templates' `line` matches whole events."""

    def apply(self, obs: Observation, obj: dict[str, Any]) -> int:
        """Record what `obj` says in `obs`; return its deltas with output."""

    def learnable(self, obj: dict[str, Any], outputs: int) -> bool:
        """Cheap first test: may `obj` (which had `outputs`) become a template?"""

    def template(self, data: bytes, obj: dict[str, Any], outputs: int,
                 max_bytes: int) -> EventTemplate | None:
        """A template from the event data `data` that parsed to `obj`, or None."""
