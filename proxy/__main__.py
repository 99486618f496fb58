"""Command line: `aoai-stream-proxy [--config PATH]`, `simulate`, `demo`, `loadgen`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence

from . import __version__, loadgen
from .app import create_app
from .config import Config, ConfigError, ListenConfig, UpstreamConfig, load_config
from .server import start, wait_for_signal
from .simulator import SimulatorConfig, create_simulator_app

log = logging.getLogger("aoai_stream_proxy")
DEMO_DEPLOYMENTS = ("gpt-4o", "gpt-4o-mini")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aoai-stream-proxy",
        description="Reverse proxy for Azure OpenAI: unbuffered streams, Prometheus metrics.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config", default="config.yaml",
                        help="YAML config file (default: ./config.yaml)")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    commands.add_parser("serve", help="run the proxy (the default)").add_argument(
        "--config", default=argparse.SUPPRESS, help="YAML config file")
    simulate = commands.add_parser("simulate", help="run the simulated Azure OpenAI upstream")
    simulate.add_argument("--host", default="127.0.0.1")
    simulate.add_argument("--port", type=int, default=8000)
    simulate.add_argument("--tokens", type=int, default=SimulatorConfig.tokens,
                          help="content chunks per completion")
    simulate.add_argument("--first-token-delay", type=float, default=0.0, metavar="SECONDS")
    simulate.add_argument("--token-delay", type=float, default=0.0, metavar="SECONDS")
    simulate.add_argument("--api-key", action="append", default=[],
                          help="accept only this key (repeatable; default: any key)")
    demo = commands.add_parser("demo", help="simulator + proxy + sample traffic, no Azure needed")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--no-traffic", action="store_true", help="do not send sample requests")
    loadgen.add_arguments(commands.add_parser("loadgen", help="send a realistic request mix"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "simulate":
            return asyncio.run(_simulate(args))
        if args.command == "demo":
            return asyncio.run(_demo(args))
        if args.command == "loadgen":
            return loadgen.main(args)
        try:
            config = load_config(args.config, os.environ)
        except ConfigError as exc:
            print(f"aoai-stream-proxy: {exc}", file=sys.stderr)
            return 2
        return asyncio.run(_serve(config))
    except KeyboardInterrupt:
        return 0


async def _serve(config: Config) -> int:
    runner, port = await start(create_app(config), config.listen.host, config.listen.port)
    log.info("aoai-stream-proxy %s listening on http://%s:%d", __version__,
             config.listen.host, port)
    try:
        await wait_for_signal()
    finally:
        await runner.cleanup()
    return 0


async def _simulate(args: argparse.Namespace) -> int:
    config = SimulatorConfig(tokens=args.tokens, first_token_delay=args.first_token_delay,
                             token_delay=args.token_delay, api_keys=tuple(args.api_key))
    runner, port = await start(create_simulator_app(config), args.host, args.port)
    log.info("simulated Azure OpenAI listening on http://%s:%d (deployments: %s)",
             args.host, port, ", ".join(config.deployments))
    try:
        await wait_for_signal()
    finally:
        await runner.cleanup()
    return 0


async def _demo(args: argparse.Namespace) -> int:
    config = Config(
        listen=ListenConfig(host=args.host, port=args.port),
        upstreams=(UpstreamConfig(name="simulator", endpoint="simulator",
                                  deployments=DEMO_DEPLOYMENTS),),
        access_log=False, source="demo")
    runner, port = await start(create_app(config), args.host, args.port)
    base = f"http://{args.host}:{port}"
    print(_demo_banner(base), flush=True)
    traffic = None
    if not args.no_traffic:
        traffic = asyncio.create_task(loadgen.run_loadgen(
            base, duration=24 * 3600, concurrency=2, quiet=True))
    try:
        await wait_for_signal()
    finally:
        if traffic is not None:
            traffic.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await traffic
        await runner.cleanup()
    return 0


def _demo_banner(base: str) -> str:
    return f"""
aoai-stream-proxy demo: the proxy is forwarding to a built-in simulated Azure OpenAI
(deployments {", ".join(DEMO_DEPLOYMENTS)}); sample traffic is flowing through it.

  Metrics      {base}/metrics
  Health       {base}/healthz
  Try a stream:
    curl -N '{base}/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21' \\
      -H 'api-key: any' -H 'content-type: application/json' \\
      -d '{{"messages":[{{"role":"user","content":"hi"}}],"stream":true}}'
  Or point openai-python at it:
    AzureOpenAI(azure_endpoint="{base}", api_key="any", api_version="2024-10-21")

Press Ctrl-C to stop.
"""


if __name__ == "__main__":
    raise SystemExit(main())
