"""What can go wrong asking an upstream, as the relay needs to tell it apart."""

from __future__ import annotations


class UpstreamHTTPError(Exception):
    """Base of every error of the upstream client."""


class ConnectFailed(UpstreamHTTPError):
    """No connection: refused, unreachable, unresolvable."""


class TLSFailed(ConnectFailed):
    """The TLS handshake failed (e.g. the endpoint speaks plain HTTP)."""


class CertificateInvalid(TLSFailed):
    """The upstream's certificate could not be verified; `cause` is OpenSSL's error."""

    def __init__(self, message: str, cause: BaseException) -> None:
        super().__init__(message)
        self.cause = cause


class Disconnected(UpstreamHTTPError):
    """The upstream closed the connection before the response (or its body) was complete."""


class ProtocolError(UpstreamHTTPError):
    """The upstream's response is not valid HTTP/1.1 (or is over the client's limits)."""


class BodyBroken(UpstreamHTTPError):
    """The body's framing broke off mid-way (e.g. an invalid chunk size)."""
