"""Converters for single config values: each returns the value in its typed form or raises
`TypeError` / `ValueError` with the message the user sees after the file and key."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from proxy.config.model import SIMULATOR_ENDPOINT

_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")


def kind(value: object) -> str:
    if value is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


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


def to_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError(f"expected a whole number, got {kind(value)}")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"expected a whole number, got {value!r}") from None


def to_port(value: Any) -> int:
    port = to_int(value)
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} is out of range 0-65535")
    return port


def to_positive_int(value: Any) -> int:
    number = to_int(value)
    if number <= 0:
        raise ValueError(f"expected a positive number, got {number}")
    return number


def to_seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"expected a number of seconds, got {kind(value)}")
    try:
        seconds = float(value)
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {value!r}") from None
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
