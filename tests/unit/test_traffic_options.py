"""The options of `aoai-stream-proxy loadgen`."""

from __future__ import annotations

import argparse

import pytest

from proxy.traffic.options import add_arguments


def test_cli_defaults_and_validation() -> None:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--target", "http://proxy:8080"])
    assert (args.duration, args.concurrency, args.api_key) == (60.0, 4, "demo-key")
    assert args.deployments is None and args.max_requests is None and args.seed is None
    args = parser.parse_args(
        ["--target", "http://x", "--deployment", "a", "--deployment", "b", "--seed", "3"]
    )
    assert args.deployments == ["a", "b"] and args.seed == 3
    for bad in (["--concurrency", "0"], ["--duration", "-1"], ["--max-requests", "0"]):
        with pytest.raises(SystemExit):
            parser.parse_args(["--target", "http://x", *bad])
