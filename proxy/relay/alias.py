"""Deployment aliases on the wire: the one name an upstream knows a deployment by.

`/openai/deployments/{name}/...` gets the upstream's name in the path; `/openai/v1/...` in the
body's top-level `model` string. Every other byte stays as the client sent it: the body is
scanned, not re-encoded, so numbers, escapes, spacing and key order survive.
"""

from __future__ import annotations

import json

_PREFIX = "/openai/deployments/"
_SPACE = b" \t\r\n"


def deployment_in_path(path: str) -> str | None:
    """`/openai/deployments/{name}/...` -> name; other forms carry it in the body's `model`."""
    parts = path.split("/", 4)
    if len(parts) >= 4 and parts[1] == "openai" and parts[2] == "deployments" and parts[3]:
        return parts[3]
    return None


def path_with_deployment(raw_path_qs: str, deployment: str) -> str:
    """`raw_path_qs` with its deployment segment replaced (names need no escaping: config
    accepts only letters, digits and `._-`)."""
    if not raw_path_qs.startswith(_PREFIX):
        return raw_path_qs
    rest = raw_path_qs[len(_PREFIX):]
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    return _PREFIX + deployment + rest[end:]


def body_with_model(body: bytes, model: str) -> bytes:
    """`body` with every top-level `"model": "<string>"` member's value set to `model`.

    A body that is not a JSON object (or not UTF-8) is returned unchanged: the upstream
    answers it with its own error, as it would have without the proxy.
    """
    spans = _model_value_spans(body)
    if not spans:
        return body
    value = json.dumps(model).encode()
    out, last = [], 0
    for start, end in spans:
        out += [body[last:start], value]
        last = end
    out.append(body[last:])
    return b"".join(out)


def _model_value_spans(body: bytes) -> list[tuple[int, int]]:
    """(start, end) of each top-level `model` member's string value, quotes included."""
    i = _skip_space(body, 0)
    if body[i:i + 1] != b"{" or json.detect_encoding(body) != "utf-8":
        return []
    spans: list[tuple[int, int]] = []
    i += 1
    try:
        while True:
            i = _skip_space(body, i)
            if body[i:i + 1] == b"}":
                return spans
            key_end = _string_end(body, i)
            key = json.loads(body[i:key_end])
            i = _skip_space(body, key_end)
            if body[i:i + 1] != b":":
                return []
            i = _skip_space(body, i + 1)
            value_end = _value_end(body, i)
            if key == "model" and body[i:i + 1] == b'"':
                spans.append((i, value_end))
            i = _skip_space(body, value_end)
            if body[i:i + 1] == b",":
                i += 1
            elif body[i:i + 1] != b"}":
                return []
    except (ValueError, IndexError):
        return []


def _skip_space(body: bytes, i: int) -> int:
    while i < len(body) and body[i] in _SPACE:
        i += 1
    return i


def _string_end(body: bytes, i: int) -> int:
    """Index just past the JSON string starting at `i`."""
    if body[i:i + 1] != b'"':
        raise ValueError("expected a string")
    i += 1
    while True:
        c = body[i]
        if c == 0x5C:  # backslash: the next byte is escaped
            i += 2
        elif c == 0x22:
            return i + 1
        else:
            i += 1


def _value_end(body: bytes, i: int) -> int:
    """Index just past the JSON value starting at `i` (nested values skipped whole)."""
    if body[i:i + 1] == b'"':
        return _string_end(body, i)
    depth = 0
    while i < len(body):
        c = body[i]
        if c == 0x22:
            i = _string_end(body, i)
            continue
        if c in b"[{":
            depth += 1
        elif c in b"]}":
            if depth == 0:
                return i
            depth -= 1
        elif c == 0x2C and depth == 0:
            return i
        i += 1
    raise ValueError("unterminated value")
