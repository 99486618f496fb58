"""The options of `aoai-stream-proxy loadgen`, apart from the generator itself.

The command line builds every subcommand's parser on each start, the proxy's included, so this
module imports nothing but argparse: the serving process never loads the load generator.
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments"]


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also rejects nan
        raise argparse.ArgumentTypeError("must be a number >= 0")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `aoai-stream-proxy loadgen`."""
    parser.add_argument(
        "--target", required=True, help="base URL of the proxy, e.g. http://127.0.0.1:8080"
    )
    parser.add_argument(
        "--duration",
        type=_non_negative_float,
        default=60.0,
        metavar="SECONDS",
        help="stop after this many seconds (default 60)",
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        default=4,
        help="requests in flight at once (default 4)",
    )
    parser.add_argument(
        "--max-requests",
        type=_positive_int,
        default=None,
        metavar="N",
        help="stop after N requests (default: no limit)",
    )
    parser.add_argument("--api-key", default="demo-key", help="sent as api-key (default demo-key)")
    parser.add_argument(
        "--deployment",
        dest="deployments",
        action="append",
        metavar="NAME",
        help="deployment to use (repeatable; default gpt-4o and gpt-4o-mini)",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed for a repeatable mix")
    parser.add_argument(
        "--time-scale",
        type=_non_negative_float,
        default=1.0,
        metavar="FACTOR",
        help="multiply simulated delays and think times (default 1)",
    )
