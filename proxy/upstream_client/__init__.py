"""The proxy's own HTTP/1.1 client for its upstreams (`UpstreamClient`)."""

from proxy.upstream_client.body import Body
from proxy.upstream_client.connection import UpstreamResponse
from proxy.upstream_client.errors import (
    BodyBroken,
    CertificateInvalid,
    ConnectFailed,
    Disconnected,
    ProtocolError,
    TLSFailed,
    UpstreamHTTPError,
)
from proxy.upstream_client.pool import UpstreamClient

__all__ = ["Body", "BodyBroken", "CertificateInvalid", "ConnectFailed", "Disconnected",
           "ProtocolError", "TLSFailed", "UpstreamClient", "UpstreamHTTPError",
           "UpstreamResponse"]
