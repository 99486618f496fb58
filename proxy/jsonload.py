"""JSON parsing for the bytes the proxy reads: orjson where it can, `json` for the rest.

orjson parses our bodies and chunks 3-5x faster than `json` (bench/README.md, "Second
pass"), and a non-stream answer is parsed once per request. It is stricter than `json`: it
refuses NaN and Infinity, lone surrogates, a byte order mark and anything not UTF-8. Whatever it
refuses goes to `json.loads`, so whatever `json` parses parses, to the same values, with one
exception: an integer beyond 64 bits comes back as a float (orjson reads it so rather than
refusing it). No count or index in an answer is that large, and the readers count only
integers, so such a value counts as none, as any other value that is not a count does. orjson
also reads nesting deeper than `json`'s recursion limit allows (up to 1024 levels).

Only for what the proxy observes: the request body, whose reading decides which bytes go
upstream, keeps `json`'s rules exactly (`proxy.relay.usage`).
"""

from __future__ import annotations

import json
from typing import Any

try:
    import orjson
except ImportError:  # a platform without a wheel: the standard library alone
    orjson = None  # type: ignore[assignment]


def loads(data: bytes) -> Any:
    """`json.loads(data)`, faster: raises ValueError (or RecursionError) as it would."""
    if orjson is not None:
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)
