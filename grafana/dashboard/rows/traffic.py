"""The Traffic row: requests by deployment, status, operation; streaming share; in-flight."""

from __future__ import annotations

from ..layout import Layout
from ..panels import target, timeseries
from ..queries import STREAMS, rate, sel


def add(lay: Layout) -> None:
    requests = "aoai_proxy_requests_total"

    lay.row("Traffic")
    lay.add(
        timeseries(
            "Requests/s by deployment and status code",
            "Requests per second by deployment and HTTP status code returned to the client.",
            [
                target(
                    rate(requests, by="deployment, status_code"), "{{deployment}} {{status_code}}"
                )
            ],
            "reqps",
            stack=True,
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "Requests/s by operation",
            "Requests per second by API operation, from the path: chat_completions, "
            "responses (the Responses API), completions, embeddings, other.",
            [target(rate(requests, by="operation"), "{{operation}}")],
            "reqps",
            stack=True,
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "Streaming share by operation",
            "Share of each operation's requests with stream=true.",
            [
                target(
                    f"{rate(requests, STREAMS, by='operation')} / {rate(requests, by='operation')}",
                    "{{operation}}",
                )
            ],
            "percentunit",
            soft_max=1,
        ),
        w=12,
    )
    lay.add(
        timeseries(
            "In-flight requests",
            "Requests the proxy is serving right now, streams included.",
            [
                target(
                    f"sum by (deployment) ({sel('aoai_proxy_in_flight_requests')})",
                    "{{deployment}}",
                )
            ],
            "short",
        ),
        w=6,
    )
    lay.add(
        timeseries(
            "Share of streams",
            "Share of requests with stream=true, per deployment.",
            [
                target(
                    f"{rate(requests, STREAMS)} / {rate(requests)}",
                    "{{deployment}}",
                )
            ],
            "percentunit",
            soft_max=1,
        ),
        w=6,
    )
