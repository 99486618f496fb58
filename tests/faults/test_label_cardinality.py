"""10,000 random deployment names, client keys, paths and upstream status codes leave a
bounded set of series: every label value comes from a closed set."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import string
from collections.abc import Awaitable, Callable
from urllib.parse import quote

import aiohttp
from yarl import URL

from proxy.config import ClientConfig
from proxy.relay.operation import OPERATIONS
from proxy.telemetry.metrics import FAILOVER_REASONS, FINISH_REASONS, TOKEN_TYPES
from proxy.vocabulary import ERROR_TYPES, FILTER_CATEGORIES, INCOMPLETE, OTHER
from tests.conftest import DEPLOYMENTS, Running
from tests.faults.conftest import StartRawUpstream
from tests.faults.faultkit import RawRequest

COUNT = int(os.environ.get("CARDINALITY_REQUESTS", "10000"))
KNOWN_KEY = "known-client-key-31f0"
STATUSES = [s for s in range(200, 1000)]
"""Every 3-digit status an upstream could send as a final answer (1xx are interim)."""
ALPHABET = string.ascii_letters + string.digits + "-._~%/é€😀 "


async def by_header_status(request: RawRequest) -> None:
    status = int(request.header("x-status") or 200)
    body = b"" if status in (204, 304) else b'{"id":"x"}'
    await request.conn.send_response(status, body, [("Content-Type", "application/json")])


def random_text(rng: random.Random, low: int = 1, high: int = 40) -> str:
    return "".join(rng.choices(ALPHABET, k=rng.randint(low, high)))


def plan(rng: random.Random, n: int) -> tuple[str, dict[str, str], bytes]:
    name = random_text(rng)
    op = quote(random_text(rng, 0, 20), safe="/")
    query = f"api-version={quote(random_text(rng, 1, 12))}&{quote(random_text(rng))}=1"
    key = KNOWN_KEY if n % 97 == 0 else "".join(rng.choices(string.printable[:94], k=24))
    headers = {"x-status": str(rng.choice(STATUSES)), "Content-Type": "application/json"}
    headers |= {"api-key": key} if n % 2 else {"Authorization": f"Bearer {key}"}
    if n % 3 == 0:
        body = f'{{"model":{quote(name)!r},"stream":{str(n % 2 == 0).lower()}}}'
        return f"/openai/v1/{op}?{query}", headers, body.replace("'", '"').encode()
    return f"/openai/deployments/{quote(name, safe='')}/{op}?{query}", headers, b'{"a":1}'


def allowed_values(label: str) -> set[str] | None:
    """The closed set a label's values must come from (None: numeric bucket bound)."""
    closed = {
        "deployment": {*DEPLOYMENTS, "other"},
        "client": {"app", "unknown"},
        "stream": {"true", "false"},
        "operation": set(OPERATIONS),
        # upstream_requests_total: an attempt without an answer is labelled by its error type.
        "status_code": {str(s) for s in range(100, 600)} | {"other", *ERROR_TYPES},
        "finish_reason": {*FINISH_REASONS, INCOMPLETE, "other"},
        "error_type": set(ERROR_TYPES),
        "token_type": set(TOKEN_TYPES),
        "stage": {"prompt", "completion"},
        "category": {*FILTER_CATEGORIES, OTHER},
        "resource": {"requests", "tokens"},
        "upstream": {"primary"},
        "reason": set(FAILOVER_REASONS),
    }
    if label == "le":
        return None
    return closed[label]


async def test_random_names_keys_paths_and_statuses_leave_bounded_series(
        raw_upstream: StartRawUpstream, start_proxy: Callable[..., Awaitable[Running]]) -> None:
    upstream = await raw_upstream(by_header_status)
    proxy = await start_proxy(upstream.url, clients=(
        ClientConfig("app", hashlib.sha256(KNOWN_KEY.encode()).hexdigest()),))
    rng = random.Random(10_000)
    plans = [plan(rng, n) for n in range(COUNT)]
    queue = list(reversed(plans))
    statuses: dict[int, int] = {}

    async def worker(http: aiohttp.ClientSession) -> None:
        for _ in range(COUNT):
            if not queue:
                return
            target, headers, body = queue.pop()
            async with http.post(URL(proxy.url + target, encoded=True), data=body,
                                 headers=headers) as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1

    async with aiohttp.ClientSession(auto_decompress=False) as http:
        async with asyncio.timeout(120):
            await asyncio.gather(*(worker(http) for _ in range(32)))

    assert sum(statuses.values()) == COUNT
    assert len(upstream.requests) == COUNT, "some requests never reached the upstream"
    assert proxy.registry is not None
    series = [s for family in proxy.registry.collect() for s in family.samples]
    seen: dict[str, set[str]] = {}
    for sample in series:
        for label, value in sample.labels.items():
            seen.setdefault(label, set()).add(value)
    for label, values in seen.items():
        allowed = allowed_values(label)
        if allowed is None:
            assert all(v == "+Inf" or float(v) >= 0 for v in values)
        else:
            assert values <= allowed, (label, sorted(values - allowed)[:20])
    assert seen["client"] == {"app", "unknown"}
    requests = sum(s.value for s in series if s.name == "aoai_proxy_requests_total")
    assert requests == COUNT
    assert len(series) < 20_000, len(series)
