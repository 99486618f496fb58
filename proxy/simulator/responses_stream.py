"""A Responses API stream: its named events in Azure's order (``docs/responses-wire.md`` §2, §3).

Every event is one write of ``event: <type>`` and ``data: {...}`` whose JSON repeats the type
and carries ``sequence_number``. Pacing, the gate and the stream stats are those of chat
streams (``streams.stream_events``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, Final

from .responses_body import (
    MODEL_FAILED,
    answer_item,
    finished,
    opening,
    reasoning_item,
    text_part,
)
from .responses_plan import Reply
from .streams import DROP, Event
from .wire import WORDS, compact

_WORDS_JSON: Final = tuple(compact(w) for w in WORDS)
_POLICY_MESSAGE: Final = (
    "The response was filtered due to the output triggering Azure OpenAI's content management "
    "policy."
)
_TERMINAL: Final = {
    "completed": "response.completed",
    "incomplete": "response.incomplete",
    "failed": "response.failed",
}


class _Frames:
    """Renders one stream's events in order, numbering them as it goes."""

    def __init__(self, r: Reply) -> None:
        self._r = r
        self._next = 0
        self.output_index = 1 if r.summary else 0
        item = r.ids.function_call if r.tool_name is not None else r.ids.message
        self._delta_head = f'"item_id":"{item}","output_index":{self.output_index},'

    def _number(self) -> int:
        number = self._next
        self._next += 1
        return number

    def event(self, kind: str, **fields: Any) -> bytes:
        payload = {"type": kind, "sequence_number": self._number()} | fields
        return f"event: {kind}\ndata: {compact(payload)}\n\n".encode()

    def delta(self, step: int) -> bytes:
        """The hot path, templated: one output-text word or function-argument fragment."""
        number = self._number()
        if self._r.tool_name is not None:
            kind = "response.function_call_arguments.delta"
            tail = f'"delta":{compact(self._r.tool_fragments[step])}'
        else:
            kind = "response.output_text.delta"
            word = _WORDS_JSON[step % len(_WORDS_JSON)]
            tail = f'"content_index":0,"delta":{word},"logprobs":[]'
        if self._r.stamp:  # the send time, in the padding field OpenAI puts on deltas
            tail += f',"obfuscation":"{time.monotonic_ns() // 1000}"'
        return (
            f'event: {kind}\ndata: {{"type":"{kind}","sequence_number":{number},'
            f"{self._delta_head}{tail}}}\n\n"
        ).encode()


def response_events(r: Reply) -> Iterator[Event]:
    """The whole stream, lazily (as chat streams, so that many open streams stay cheap)."""
    frames = _Frames(r)
    yield frames.event("response.created", response=opening(r))
    if r.kill:
        yield from _kill(r, frames)
        return
    yield frames.event("response.in_progress", response=opening(r))
    if r.summary:
        yield from _reasoning(r, frames)
    if r.first_token_delay > 0:
        yield r.first_token_delay
    if r.steps:
        yield from _answer(r, frames)
    if r.drop_after is not None:
        yield DROP
        return
    if r.scenario == "error_event" and not r.failed_event:
        error = {"code": "server_error", "message": MODEL_FAILED["message"], "param": None}
        yield frames.event("error", error=error)
        return
    if r.steps and r.status != "failed":
        yield from _close_answer(r, frames)
    yield frames.event(_TERMINAL[r.status], response=finished(r))


def _kill(r: Reply, frames: _Frames) -> Iterator[Event]:
    """Azure's output-filter kill (§6): only ``response.failed`` and an ``error`` frame follow,
    once the filter has seen the half of the output it stops at."""
    generation = r.first_token_delay + r.token_delay * r.steps
    if generation > 0:
        yield generation
    yield frames.event("response.failed", response=finished(r))
    error = {"code": "content_policy_violation", "message": _POLICY_MESSAGE, "param": None}
    yield frames.event("error", error=error)


def _reasoning(r: Reply, frames: _Frames) -> Iterator[Event]:
    """The reasoning item with its summary, all before the first output (§3)."""
    at = {"item_id": r.ids.reasoning, "output_index": 0, "summary_index": 0}
    yield frames.event("response.output_item.added", output_index=0, item=reasoning_item(r, None))
    empty = {"type": "summary_text", "text": ""}
    yield frames.event("response.reasoning_summary_part.added", **at, part=empty)
    for index, piece in enumerate(r.summary):
        if index and r.token_delay > 0:
            yield r.token_delay
        yield frames.event("response.reasoning_summary_text.delta", **at, delta=piece)
    summary = r.summary_text()
    yield frames.event("response.reasoning_summary_text.done", **at, text=summary)
    part = {"type": "summary_text", "text": summary}
    yield frames.event("response.reasoning_summary_part.done", **at, part=part)
    done = reasoning_item(r, summary)
    yield frames.event("response.output_item.done", output_index=0, item=done)


def _answer(r: Reply, frames: _Frames) -> Iterator[Event]:
    """The answer item opened, then its deltas; cut short where the connection drops."""
    index = frames.output_index
    item = answer_item(r, "in_progress", "")
    yield frames.event("response.output_item.added", output_index=index, item=item)
    if r.tool_name is None:
        at = {"item_id": r.ids.message, "output_index": index, "content_index": 0}
        yield frames.event("response.content_part.added", **at, part=text_part(""))
    for step in range(r.steps):
        if step and r.token_delay > 0:
            yield r.token_delay
        if step == r.drop_after:
            return
        yield frames.delta(step)


def _close_answer(r: Reply, frames: _Frames) -> Iterator[Event]:
    index = frames.output_index
    status = "completed" if r.status == "completed" else "incomplete"
    text = r.text()
    if r.tool_name is not None:
        at: dict[str, Any] = {"item_id": r.ids.function_call, "output_index": index}
        yield frames.event("response.function_call_arguments.done", **at, arguments=text)
    else:
        at = {"item_id": r.ids.message, "output_index": index, "content_index": 0}
        yield frames.event("response.output_text.done", **at, text=text, logprobs=[])
        yield frames.event("response.content_part.done", **at, part=text_part(text))
    item = answer_item(r, status, text)
    yield frames.event("response.output_item.done", output_index=index, item=item)
