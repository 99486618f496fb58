"""Converters for single config values (the numeric ones shared with routing are in
`proxy.scalars`): each returns the value in its typed form or raises
`TypeError` / `ValueError` with the message the user sees after the file and key."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from proxy.config.model import SIMULATOR_ENDPOINT
from proxy.scalars import kind, to_float, to_int

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def to_text(value: Any) -> str:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise TypeError(f"expected a string, got {kind(value)}")
    return str(value)


def to_optional_text(value: Any) -> str | None:
    return None if value is None else to_text(value)


def to_name(value: Any) -> str:
    text = to_text(value)
    if not _NAME.match(text):
        raise ValueError(f"{text!r} is not a valid name (letters, digits, . _ -; at most 64)")
    return text


def to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in {"true", "false", "yes", "no", "1", "0"}:
        return value.lower() in {"true", "yes", "1"}
    raise ValueError(f"expected true or false, got {value!r}")


def to_port(value: Any) -> int:
    port = to_int(value)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 0-65535")
    return port


def to_seconds(value: Any) -> float:
    seconds = to_float(value, "a number of seconds")
    if not seconds > 0:
        raise ValueError(f"expected a positive number of seconds, got {value!r}")
    return seconds


def to_non_negative_seconds(value: Any) -> float:
    return 0.0 if value in (0, "0") else to_seconds(value)


def to_endpoint(value: Any) -> str:
    text = to_text(value).strip()
    if text == SIMULATOR_ENDPOINT:
        return text
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        raise ValueError(f"{text!r} is not scheme://host[:port] (e.g. "
                         "https://my-resource.openai.azure.com) nor `simulator`")
    if parts.path not in {"", "/"} or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{text!r} must be only scheme://host[:port]; the proxy keeps the "
                         "client's path (/openai/...) as it is")
    try:
        _ = parts.port  # urlsplit validates the port only when it is read
    except ValueError:
        raise ValueError(f"{text!r} has an invalid port") from None
    return f"{parts.scheme}://{parts.netloc}"


def to_sha256(value: Any) -> str:
    text = to_text(value)
    if not _HEX64.match(text):
        raise ValueError("expected 64 hex digits (sha256 of the client's key)")
    return text.lower()


def to_route(value: Any) -> str:
    text = to_text(value)
    if not text.startswith("/") or text.startswith("/openai"):
        raise ValueError(f"{text!r} must start with / and not be under /openai")
    return text


def to_origin(value: Any) -> str:
    """`*` or an origin as browsers send it: scheme://host[:port], nothing after."""
    text = to_text(value).strip()
    if text == "*":
        return text
    parts = urlsplit(text)
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.path \
            or parts.query or parts.fragment or parts.username or text.endswith("/"):
        raise ValueError(f"{text!r} is not an origin: write scheme://host[:port] with no path "
                         "or trailing slash (e.g. https://app.example.com), or \"*\"")
    try:
        _ = parts.port
    except ValueError:
        raise ValueError(f"{text!r} has an invalid port") from None
    # Browsers send the scheme and host in lower case.
    return text.lower()


def to_header_name(value: Any) -> str:
    text = to_text(value).strip()
    if not _HEADER_NAME.match(text):
        raise ValueError(f"{text!r} is not a header name")
    return text.lower()


def to_max_age(value: Any) -> int:
    seconds = to_int(value)
    if not 0 <= seconds <= 86400:
        raise ValueError(f"expected seconds from 0 to 86400, got {seconds}")
    return seconds
