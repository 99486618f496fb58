"""A simulated Azure OpenAI upstream for the demo, the tests and the benchmarks.

It speaks the wire format described in ``azure-openai-wire.md``: the classic
``/openai/deployments/{deployment}/...?api-version=...`` paths and the ``/openai/v1/...``
paths, Azure's headers, Azure's error bodies, and streams in which every event is one
network write, in the order a real deployment sends them.

Per-request control: the ``x-simulator`` header
-----------------------------------------------

Send ``x-simulator: key=value; key=value`` (``,`` also separates pairs) to choose how the
simulator answers one request. Without the header a chat completion streams ``tokens``
words (20 by default) and finishes with ``stop``. Unknown keys, bad values and keys that do
not apply to the chosen scenario are answered with a 400 in Azure's error shape that names
the key.

- ``scenario`` chooses what happens:
  - ``stop`` (default): a normal completion. A body ``max_tokens`` or
    ``max_completion_tokens`` below ``tokens`` cuts it to that many content chunks and it
    finishes with ``length`` instead.
  - ``length``: finishes with ``finish_reason: "length"``.
  - ``tool_calls``: the assistant calls the first tool of the request (``get_weather`` when
    there is none): one delta with the call's id, name and type, then ``tokens`` argument
    fragments that join into a JSON object, then ``finish_reason: "tool_calls"``.
  - ``content_filter``: the output filter fires mid-stream: ``tokens // 2`` content chunks,
    then a finish chunk with ``finish_reason: "content_filter"`` and the category marked
    ``filtered: true`` (severity ``medium``), then ``[DONE]``. Status stays 200.
  - ``prompt_filter``: 400 with ``code: "content_filter"`` and
    ``innererror.content_filter_result`` marking the category as filtered.
  - ``rate_limit``: 429 with ``code: "429"``, ``retry-after``, ``retry-after-ms`` and
    ``x-ratelimit-remaining-tokens: 0``.
  - ``server_error``: 500 ``InternalServerError``.
  - ``disconnect``: after ``disconnect_after`` content chunks (default ``tokens // 2``) the
    simulator closes the TCP connection mid-body: no finish chunk, no ``[DONE]``, and the
    chunked body is never terminated.
  - ``error_event``: ``tokens // 2`` content chunks, then one
    ``data: {"error":{...,"type":"server_error",...}}`` event, then the body ends without
    ``[DONE]``.
- ``category``: the filter category for ``content_filter`` (default ``violence``) and
  ``prompt_filter`` (default ``self_harm``): one of ``hate``, ``sexual``, ``violence``,
  ``self_harm``, ``jailbreak``, ``protected_material_text``, ``protected_material_code``,
  ``profanity``.
- ``tokens``: content chunks per choice (overrides the configured default).
- ``first_token_delay_ms``: pause between the prompt-annotation chunk and the first content
  chunk; ``token_delay_ms``: pause between content chunks. Pauses follow a fixed schedule
  from the stream's start (each event is due one pause after the previous one was due), so
  a late event does not delay the ones after it.
- ``filter_mode``: ``default`` or ``async``. In ``async`` mode content chunks carry no
  ``content_filter_results``; instead annotation-only chunks (``id: ""``, no ``delta``, with
  ``content_filter_offsets``) follow every 5th content chunk of a choice and the finish
  chunk. A ``content_filter`` scenario then ends with an annotation chunk carrying
  ``finish_reason: "content_filter"`` in place of the finish chunk.
- ``trailing_annotation=1``: in ``default`` mode, add an annotation-only chunk per choice
  after the finish chunk (older Azure deployments do this).
- ``no_done=1``: end the body without ``data: [DONE]``.
- ``retry_after_s``: the delay a ``rate_limit`` answer asks for (default 6).
- ``reasoning_tokens``, ``cached_tokens``: reported in ``usage``'s details;
  reasoning tokens are counted inside ``completion_tokens``.
- ``disconnect_after``: see ``scenario=disconnect``.
- ``stamp=1``: every chunk that has an ``obfuscation`` field (all but the prompt annotation
  and the async-filter annotations) carries its send time there instead of random padding:
  integer microseconds of ``time.monotonic()`` (CLOCK_MONOTONIC, shared by all processes on
  the machine), taken just before the event's write. The benchmark measures per-event
  delivery delay with it.

- ``filter_ending`` (``content_filter`` only): ``kill`` (default) or ``incomplete``;
  ``error_ending`` (``error_event`` only): ``error`` (default) or ``failed``. Responses only:
  how a filtered or failing Responses stream ends.

Embeddings honour only ``scenario=rate_limit`` and ``scenario=server_error``; legacy
completions also ``length`` and ``prompt_filter``; other scenarios there are a 400.

The Responses API (``/openai/v1/responses``, ``/openai/responses?api-version=...``) honours
every scenario in its own form, listed in ``docs/responses-wire.md`` §9; ``filter_mode``,
``trailing_annotation`` and ``no_done`` are chat-only and a 400 there.

A simulator started with an ``EventGate`` holds every SSE event, and every non-streaming
completion or embeddings body, until the gate lets it go.

Layout: ``app`` wires the routes of ``chat``, ``legacy``, ``embeddings`` and
``responses``, which share the checks of ``checks`` (``x-simulator`` via ``options``, Azure
errors from ``errors``). A chat completion is planned whole by ``completion``, then written
by ``streams`` with the event templates of ``chunks``. A Responses answer is planned by
``responses_plan``, its Response object built by ``responses_body``, its events by
``responses_stream`` (written by ``streams`` too). ``resource`` holds per-resource state and
headers, ``wire`` the fixed pieces of the wire format, ``hooks`` what tests use to hold and
observe it.
"""

from .app import create_simulator_app, serve_simulator
from .config import SimulatorConfig
from .hooks import SIM_STATS, EventGate, RecordedRequest, SimulatorStats

__all__ = [
    "SIM_STATS",
    "EventGate",
    "RecordedRequest",
    "SimulatorConfig",
    "SimulatorStats",
    "create_simulator_app",
    "serve_simulator",
]
