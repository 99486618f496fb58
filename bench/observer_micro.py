"""Micro-benchmark of the per-event cost of the stream observer and the usage-chunk stripper.

`python3 -m bench.observer_micro` prints microseconds per SSE event for `StreamObserver.feed`
and `UsageStripper.feed` when each upstream piece carries 1, 3, 10 or 30 events, and
microseconds per `observe_json` call on a ~1.2 KB chat completion body. The `parse-*` cells
price one content chunk's interpretation three ways (the template decision in bench/README.md):
a learned template's match (`parse-template`), `orjson.loads` + `semantics.apply_object`
(`parse-orjson`, when orjson is installed) and `json.loads` + `apply_object` (`parse-json`).

The events are the simulator's own chunks (`proxy.simulator.chunks`), as in benchmark S2; the
`responses-*` cells time the same number of Responses API events of the simulator
(`proxy.simulator.responses_stream`: `event:` and `data:` lines, text deltas), read by the
Responses observer, so the two APIs' costs per event compare directly. Two
piece layouts: "whole" pieces hold whole events; "split" pieces have the same sizes but every
cut falls in the middle of an event, as when a TCP read ends mid-chunk. The observer is primed
with the stream's head (prompt annotation, role, first content chunk) so that what is timed is
the steady state of a long stream: content chunks, all matching a learned template. The stripper
sees chunks with `"usage":null`, as every chunk is once the proxy injects include_usage.

Timings are the best of `--repeat` runs (the least disturbed one on a shared machine). On a
noisy machine `--callgrind` counts instructions instead, which do not drift with load: each cell
runs under `valgrind --tool=callgrind` (with a fixed hash seed and, where `setarch` can, no
address randomisation, so counts repeat exactly) with 1 and with 1 + `--passes` timed passes,
and the difference per event is reported, so interpreter start-up cancels out. That takes about
20 s a cell; `--only REGEX` picks cells, e.g. `--only 'observer-.*-whole'`.
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import random
import re
import shutil
import subprocess
import sys
import tempfile
import timeit
from collections.abc import Callable
from typing import Any

from proxy.observe.observer import StreamObserver, observe_json
from proxy.observe.responses import RESPONSES
from proxy.relay.usage_strip import UsageStripper

EVENTS = 600  # content chunks per timed pass: a multiple of every piece size below
PIECE_SIZES = (1, 3, 10, 30)
# cell name -> (what runs, the pieces it is primed with, the pieces of one timed pass)
Cells = dict[str, tuple[str, list[bytes], list[bytes]]]


def stream_parts(include_usage: bool) -> tuple[list[bytes], list[bytes]]:
    """(head events, content events) of a plain one-choice S2 stream."""
    # Imported here: it pulls in aiohttp, which the callgrind children need not load.
    from proxy.simulator.chunks import PROMPT_ANNOTATION, Chunks
    from proxy.simulator.completion import Completion

    random.seed(7)  # the obfuscation padding is drawn at random
    c = Completion(
        id="chatcmpl-" + "x" * 29, created=1762402679, model="gpt-4o-mini-2024-07-18",
        fingerprint="fp_efad92c60b", n=1, steps=EVENTS, finish_reason="stop", scenario="default",
        category="violence", tool_name=None, tool_fragments=(), include_usage=include_usage,
        async_filter=False, trailing_annotation=False, no_done=False, first_token_delay=0.0,
        token_delay=0.0, drop_after=None, prompt_chars=40, usage={},
    )
    chunks = Chunks(c)
    head = [PROMPT_ANNOTATION, chunks.role(0), chunks.piece(0, 0)]
    return head, [chunks.piece(0, step) for step in range(1, EVENTS + 1)]


def responses_parts() -> tuple[list[bytes], list[bytes]]:
    """(head events, text deltas) of a plain Responses stream of EVENTS deltas."""
    from proxy.simulator.config import SimulatorConfig
    from proxy.simulator.options import parse_options
    from proxy.simulator.resource import Resource
    from proxy.simulator.responses_plan import ResponsesRequest, plan_reply
    from proxy.simulator.responses_stream import response_events

    request = ResponsesRequest(True, None, "Tell me about streams.", "get_weather", {})
    reply = plan_reply(parse_options(f"tokens={EVENTS + 1}"), request,
                       Resource(SimulatorConfig(), None))
    events = [e for e in response_events(reply) if isinstance(e, bytes)]
    # response.created, .in_progress, output_item.added, content_part.added, the first delta
    return events[:5], events[5 : 5 + EVENTS]


def pieces(events: list[bytes], per_piece: int, split: bool) -> list[bytes]:
    """`per_piece` events to a piece; with `split`, every cut moved to mid-event."""
    bounds = [0]
    offset = 0
    for i, event in enumerate(events):
        offset += len(event)
        if (i + 1) % per_piece == 0 and i + 1 < len(events):
            bounds.append(offset + (len(events[i + 1]) // 2 if split else 0))
    data = b"".join(events)
    return [data[a:b] for a, b in zip(bounds, [*bounds[1:], len(data)], strict=True)]


def completion_body() -> bytes:
    """A one-choice chat completion as the simulator writes it (~1.2 KB)."""
    from proxy.simulator.wire import (
        MESSAGE_CATEGORIES,
        compact,
        filter_results,
        prompt_filter_results,
    )

    message: dict[str, Any] = {"annotations": [], "content": "4200 + 42 equals 4242.",
                               "refusal": None, "role": "assistant"}
    choice = {"content_filter_results": filter_results(MESSAGE_CATEGORIES, None),
              "finish_reason": "stop", "index": 0, "logprobs": None, "message": message}
    details = {"accepted_prediction_tokens": 0, "audio_tokens": 0, "reasoning_tokens": 0,
               "rejected_prediction_tokens": 0}
    usage = {"completion_tokens": 11, "completion_tokens_details": details, "prompt_tokens": 16,
             "prompt_tokens_details": {"audio_tokens": 0, "cached_tokens": 0}, "total_tokens": 27}
    return compact({
        "choices": [choice], "created": 1762402675, "id": "chatcmpl-" + "x" * 29,
        "model": "gpt-4o-mini-2024-07-18", "object": "chat.completion",
        "prompt_filter_results": prompt_filter_results(), "system_fingerprint": "fp_efad92c60b",
        "usage": usage,
    }).encode()


def build_cells() -> Cells:
    head, content = stream_parts(include_usage=False)
    _, usage_content = stream_parts(include_usage=True)
    responses_head, responses_content = responses_parts()
    cells: Cells = {}
    for size in PIECE_SIZES:
        for layout in ("whole", "split"):
            split = layout == "split"
            cells[f"observer-{size}-{layout}"] = ("observer", head, pieces(content, size, split))
            cells[f"responses-{size}-{layout}"] = (
                "responses", responses_head, pieces(responses_content, size, split))
            usage_pieces = pieces(usage_content, size, split)
            cells[f"stripper-{size}-{layout}"] = ("stripper", [], usage_pieces)
    cells["observe_json"] = ("json", [], [completion_body()])
    payloads = [event[6:-2] for event in content]  # each chunk's data, as framed
    for kind in ("parse-template", "parse-orjson", "parse-json"):
        cells[kind] = (kind, head[2:3], payloads)
    return cells


def timed_pass(kind: str, head: list[bytes], stream: list[bytes]) -> Callable[[], None]:
    """One pass over the cell's pieces, its observer or stripper already primed."""
    if kind == "json":
        body = stream[0]

        def parse() -> None:
            observe_json(body)

        return parse
    if kind.startswith("parse-"):
        return parse_pass(kind, head[0][6:-2], stream)
    feed: Callable[[bytes], object]
    if kind == "observer":
        feed = StreamObserver().feed
    elif kind == "responses":
        feed = StreamObserver(semantics=RESPONSES).feed
    else:
        feed = UsageStripper().feed
    for piece in head:
        feed(piece)

    def run() -> None:
        for piece in stream:
            feed(piece)

    return run


def parse_pass(kind: str, first: bytes, payloads: list[bytes]) -> Callable[[], None]:
    """Interpret each chunk's data one way (a template learned from `first`)."""
    import json

    from proxy.observe.semantics import Observation, apply_object
    from proxy.observe.templates import Template

    obs = Observation()
    if kind == "parse-template":
        template = Template.learn(first, 1, 16 << 10)
        assert template is not None
        fixed = template.fixed

        def match() -> None:
            for data in payloads:
                m = template.line(data, 0, len(data))
                if m is None or m.groups() != fixed:
                    raise AssertionError("a content chunk missed its template")

        return match
    if kind == "parse-orjson":
        import orjson

        loads: Callable[[bytes], Any] = orjson.loads
    else:
        loads = json.loads

    def parse() -> None:
        for data in payloads:
            apply_object(obs, loads(data))

    return parse


def unit(kind: str) -> int:
    """Events per pass (calls for observe_json)."""
    return 1 if kind == "json" else EVENTS


def time_cell(kind: str, head: list[bytes], stream: list[bytes], repeat: int) -> float:
    run = timed_pass(kind, head, stream)
    number = 2000 if kind == "json" else 10
    return min(timeit.repeat(run, repeat=repeat, number=number)) / number / unit(kind) * 1e6


def callgrind_cell(cells_file: str, name: str, kind: str, passes: int) -> float:
    """Instructions per event: a run with 1 + passes timed passes less a run with 1."""
    counts = []
    for n in (1, 1 + passes):
        cmd = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable,
               "-m", "bench.observer_micro", "--replay", cells_file, name, str(n)]
        if shutil.which("setarch"):  # no address randomisation: counts repeat exactly
            cmd = ["setarch", platform.machine(), "-R", *cmd]
        # A fixed hash seed: dict layouts, and so instruction counts, repeat from run to run.
        env = os.environ | {"PYTHONHASHSEED": "0"}
        done = subprocess.run(cmd, capture_output=True, text=True, check=True, env=env)
        counts.append(int(re.findall(r"Collected : (\d+)", done.stderr)[-1]))
    return (counts[1] - counts[0]) / passes / unit(kind)


def replay(cells_file: str, name: str, passes: int) -> None:
    """A callgrind child: prime the cell, then run its pass `passes` times."""
    with open(cells_file, "rb") as f:
        kind, head, stream = pickle.load(f)[name]  # our own file, written just before
    run = timed_pass(kind, head, stream)
    for _ in range(passes):
        run()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeat", type=int, default=15, help="timeit runs per cell, best kept")
    parser.add_argument("--callgrind", action="store_true", help="count instructions instead")
    parser.add_argument("--passes", type=int, default=4, help="timed passes under callgrind")
    parser.add_argument("--only", default="", help="regex: run only the cells it finds")
    parser.add_argument("--replay", nargs=3, help=argparse.SUPPRESS)  # FILE CELL PASSES
    args = parser.parse_args()
    if args.replay:
        replay(args.replay[0], args.replay[1], int(args.replay[2]))
        return
    cells = {k: v for k, v in build_cells().items() if re.search(args.only, k)}
    with tempfile.TemporaryDirectory() as tmp:
        cells_file = os.path.join(tmp, "cells.pickle")
        with open(cells_file, "wb") as f:
            pickle.dump(cells, f)
        unit_name = "instructions" if args.callgrind else "us"
        for name, (kind, head, stream) in cells.items():
            if args.callgrind:
                value = callgrind_cell(cells_file, name, kind, args.passes)
            else:
                value = time_cell(kind, head, stream, args.repeat)
            per = "call" if kind == "json" else "event"
            print(f"{name:<22} {value:10.3f} {unit_name}/{per}", flush=True)


if __name__ == "__main__":
    main()
