"""The bytes of each SSE event of a chat completion stream, built by string templating.

json.dumps per chunk would dominate the benchmark's CPU time, and within one completion only
the choice part and the obfuscation padding of a chunk change, so everything else is
rendered once per completion.

With ``x-simulator: stamp=1`` the obfuscation padding is the send time instead: integer
microseconds of ``time.monotonic()`` (CLOCK_MONOTONIC, the same clock in every process of the
machine), so a client on the same machine can tell how long each event took to reach it.
Events are rendered lazily, just before their write, so the render time is the send time
(with an ``EventGate``, the time before the gate's hold).
"""

from __future__ import annotations

import random
import time
from typing import Final

from .completion import Completion
from .errors import SERVER_ERROR
from .wire import (
    ALNUM,
    CHOICE_WORD_SHIFT,
    SEVERITY_CATEGORIES,
    WORDS,
    call_id,
    compact,
    filter_results,
    prompt_filter_results,
)

_CHUNK_FILTER: Final = compact(filter_results(SEVERITY_CATEGORIES, None))
PROMPT_ANNOTATION: Final = (
    'data: {"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":'
    + compact(prompt_filter_results())
    + "}\n\n"
).encode()
DONE: Final = b"data: [DONE]\n\n"
ERROR_EVENT: Final = ("data: " + compact({"error": SERVER_ERROR}) + "\n\n").encode()

_WORDS_JSON: Final = tuple(compact(w) for w in WORDS)
# Picking from a pool is far cheaper than drawing characters per chunk, and the pool still
# gives the varying lengths (0-16) that Azure's padding has.
_OBFUSCATION: Final = tuple(
    "".join(random.choices(ALNUM, k=random.randint(0, 16))) for _ in range(101)
)


class Chunks:
    """Renders the events of one completion; each method returns one whole SSE event."""

    def __init__(self, c: Completion) -> None:
        self._c = c
        self._meta = (
            f'],"created":{c.created},"id":"{c.id}","model":{compact(c.model)},"obfuscation":"'
        )
        self._object = f'","object":"chat.completion.chunk","system_fingerprint":"{c.fingerprint}"'
        self._end = ',"usage":null}\n\n' if c.include_usage else "}\n\n"
        self._filter = "" if c.async_filter else f'"content_filter_results":{_CHUNK_FILTER},'
        self._empty_filter = "" if c.async_filter else '"content_filter_results":{},'
        self._padding = random.randrange(len(_OBFUSCATION))
        self._stamp = c.stamp
        self._flagged_filter = compact(filter_results(SEVERITY_CATEGORIES, c.category))
        self._call_ids = [call_id() for _ in range(c.n)]

    def _obfuscation(self) -> str:
        if self._stamp:
            # Digits only, 12-13 of them for an uptime of days to years: within Azure's 0-16
            # alphanumeric characters, so the chunk stays valid. monotonic_ns avoids float
            # rounding.
            return str(time.monotonic_ns() // 1000)
        self._padding = (self._padding + 1) % len(_OBFUSCATION)
        return _OBFUSCATION[self._padding]

    def _real(self, choice: str, end: str | None = None) -> bytes:
        return (
            f'data: {{"choices":[{choice}{self._meta}{self._obfuscation()}{self._object}'
            f"{self._end if end is None else end}"
        ).encode()

    def _choice(self, index: int, delta: str, finish: str = "null", filters: str = "") -> str:
        return (
            f'{{{filters}"delta":{delta},"finish_reason":{finish},"index":{index},"logprobs":null}}'
        )

    def _unscored(self, index: int, delta: str) -> bytes:
        """A chunk the output filter has nothing to say about (empty results)."""
        return self._real(self._choice(index, delta, filters=self._empty_filter))

    def role(self, index: int) -> bytes:
        # A tool-calling turn starts with null content and no refusal key, as Azure sends it.
        if self._c.tool_name is not None:
            return self._unscored(index, '{"content":null,"role":"assistant"}')
        return self._unscored(index, '{"content":"","refusal":null,"role":"assistant"}')

    def tool_call_start(self, index: int) -> bytes:
        name = compact(self._c.tool_name)
        delta = (
            f'{{"tool_calls":[{{"function":{{"arguments":"","name":{name}}},'
            f'"id":"{self._call_ids[index]}","index":0,"type":"function"}}]}}'
        )
        return self._unscored(index, delta)

    def piece(self, index: int, step: int) -> bytes:
        if self._c.tool_name is not None:
            fragment = compact(self._c.tool_fragments[step])
            delta = f'{{"tool_calls":[{{"function":{{"arguments":{fragment}}},"index":0}}]}}'
            return self._unscored(index, delta)
        # The word Completion.piece picks, already JSON-encoded: no dumps per chunk.
        word = _WORDS_JSON[(step + CHOICE_WORD_SHIFT * index) % len(_WORDS_JSON)]
        return self._real(self._choice(index, f'{{"content":{word}}}', filters=self._filter))

    def finish(self, index: int) -> bytes:
        filters = self._empty_filter
        if self._c.finish_reason == "content_filter" and not self._c.async_filter:
            filters = f'"content_filter_results":{self._flagged_filter},'
        finish = f'"{self._c.finish_reason}"'
        return self._real(self._choice(index, "{}", finish=finish, filters=filters))

    def usage(self) -> bytes:
        return self._real("", end=f',"usage":{compact(self._c.usage)}}}\n\n')

    def annotation(
        self, index: int, offsets: tuple[int, int, int], *, flagged: bool, finish: str = "null"
    ) -> bytes:
        """An annotation-only chunk: a filter verdict on a span of a choice's text."""
        check, start, end = offsets
        filters = self._flagged_filter if flagged else _CHUNK_FILTER
        return (
            'data: {"choices":[{"content_filter_offsets":'
            f'{{"check_offset":{check},"end_offset":{end},"start_offset":{start}}},'
            f'"content_filter_results":{filters},"finish_reason":{finish},"index":{index}}}],'
            '"created":0,"id":"","model":"","object":""}\n\n'
        ).encode()
