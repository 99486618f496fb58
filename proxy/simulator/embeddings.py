"""The embeddings endpoint: a deterministic unit vector per input, as floats or base64."""

from __future__ import annotations

import base64
import math
import random
import sys
import zlib
from array import array
from typing import Any, Final

from aiohttp import web

from .checks import accept, optional_int
from .errors import invalid

_SCENARIOS: Final = frozenset({"stop", "rate_limit", "server_error"})
_MODEL: Final = "text-embedding-3-small"
_DEFAULT_DIMS: Final = 1536
_MAX_DIMS: Final = 3072


async def embeddings(request: web.Request) -> web.StreamResponse:
    call = await accept(request, _SCENARIOS, "embeddings", "Embeddings_Create")
    body = call.body
    inputs = _inputs(body.get("input"))
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise invalid(f"{encoding!r} is not one of ['float', 'base64']", "encoding_format")
    dims = optional_int(body, "dimensions", 1) or _DEFAULT_DIMS
    if dims > _MAX_DIMS:
        message = f"{dims} is greater than the maximum of {_MAX_DIMS} - 'dimensions'"
        raise invalid(message, "dimensions")
    prompt_tokens = sum(
        len(item) // 4 + 1 if isinstance(item, str) else len(item) for item in inputs
    )
    data = [
        {"embedding": _encode(_vector(item, dims), encoding), "index": index, "object": "embedding"}
        for index, item in enumerate(inputs)
    ]
    reply = {
        "data": data,
        "model": _MODEL,
        "object": "list",
        "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
    }
    headers = call.resource.headers(call.deployment, success=True, tokens=prompt_tokens)
    return await call.resource.respond(reply, headers)


def _inputs(value: Any) -> list[str | list[int]]:
    """Normalise ``input``: a string, a token list, or a list of either."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(t, int) and not isinstance(t, bool) for t in value):
            return [list(value)]
        if all(isinstance(item, str) or _is_token_list(item) for item in value):
            return list(value)
    raise invalid("'input' must be a non-empty string, token list, or list of them", "input")


def _is_token_list(item: Any) -> bool:
    return isinstance(item, list) and all(isinstance(t, int) for t in item)


def _vector(item: str | list[int], dims: int) -> array[float]:
    """A deterministic unit vector per input, held as float32 like the real service's."""
    seed = zlib.crc32(item.encode() if isinstance(item, str) else repr(item).encode())
    rng = random.Random(seed)
    values = [rng.uniform(-1.0, 1.0) for _ in range(dims)]
    norm = math.sqrt(sum(v * v for v in values)) or 1.0
    return array("f", (v / norm for v in values))


def _encode(vector: array[float], encoding: str) -> str | list[float]:
    if encoding == "float":
        return vector.tolist()
    if sys.byteorder == "big":  # the wire format is little-endian float32
        vector = array("f", vector)
        vector.byteswap()
    return base64.b64encode(vector.tobytes()).decode("ascii")
