"""Command line: `aoai-stream-proxy [--config PATH]`, `simulate`, `demo`, `loadgen`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Sequence

from proxy import __version__
from proxy.app import create_app
from proxy.config import Config, ConfigError, ListenConfig, UpstreamConfig, load_config
from proxy.runtime import event_loop
from proxy.runtime.server import serve, start, wait_for_signal
from proxy.runtime.workers import Supervisor, worker_count, worker_registries
from proxy.simulator import SimulatorConfig, create_simulator_app
from proxy.traffic import generator as loadgen

log = logging.getLogger("aoai_stream_proxy")
DEMO_DEPLOYMENTS = ("gpt-4o", "gpt-4o-mini")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aoai-stream-proxy",
        description="Reverse proxy for Azure OpenAI: unbuffered streams, Prometheus metrics.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    _serve_options(parser, defaults=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve = commands.add_parser("serve", help="run the proxy (the default)")
    _serve_options(serve, defaults=False)
    # Internal: set by the `--workers` supervisor for the processes it starts.
    serve.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
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
    _event_loop_option(demo, defaults=True)
    loadgen.add_arguments(commands.add_parser("loadgen", help="send a realistic request mix"))
    return parser


def _serve_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """`--config` and `--workers`, accepted before or after the optional `serve`."""
    default = (lambda value: value) if defaults else (lambda value: argparse.SUPPRESS)
    parser.add_argument("--config", default=default("config.yaml"),
                        help="YAML config file (default: ./config.yaml)")
    parser.add_argument("--workers", default=default("1"), metavar="N",
                        help="processes sharing the port (SO_REUSEPORT); `auto` = one per CPU "
                             "(default: 1)")
    _event_loop_option(parser, defaults=defaults)


def _event_loop_option(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    chosen = os.environ.get(event_loop.ENV, "auto")
    parser.add_argument("--event-loop", choices=event_loop.CHOICES,
                        default=chosen if defaults else argparse.SUPPRESS,
                        help=f"`auto` = uvloop when installed, else asyncio's own (default: "
                             f"auto, or ${event_loop.ENV})")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "simulate":
            return asyncio.run(_simulate(args))
        if args.command == "demo":
            return event_loop.run(_demo(args), args.event_loop)
        if args.command == "loadgen":
            return loadgen.main(args)
        return _serve(args)
    except KeyboardInterrupt:
        return 0


def _serve(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config, os.environ)
        count = worker_count(args.workers)
    except ConfigError as exc:
        print(f"aoai-stream-proxy: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"aoai-stream-proxy: --workers: {exc}", file=sys.stderr)
        return 2
    try:
        event_loop.loop_factory(args.event_loop)
    except (event_loop.LoopUnavailable, ValueError) as exc:
        print(f"aoai-stream-proxy: --event-loop: {exc}", file=sys.stderr)
        return 2
    if getattr(args, "worker", False):
        registry, exposition = worker_registries()
        event_loop.run(serve(config, reuse_port=True, registry=registry, exposition=exposition),
                       args.event_loop)
        return 0
    if count == 1:
        event_loop.run(serve(config), args.event_loop)
        return 0
    if config.listen.port == 0:
        print("aoai-stream-proxy: --workers needs a fixed listen.port (not 0)", file=sys.stderr)
        return 2
    return Supervisor(args.config, config, count, args.event_loop).run()


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
        source="demo")
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
(deployments {", ".join(DEMO_DEPLOYMENTS)}); sample traffic is flowing through it, and each
request it finishes is logged below as one JSON line.

  Metrics      {base}/metrics
  Health       {base}/healthz
  Try a stream:
    curl -N '{base}/openai/deployments/gpt-4o/chat/completions?api-version=2024-10-21' \\
      -H 'api-key: any' -H 'content-type: application/json' \\
      -d '{{"messages":[{{"role":"user","content":"hi"}}],"stream":true}}'
  Or point openai-python at it:
    AzureOpenAI(azure_endpoint="{base}", api_key="any", api_version="2024-10-21")
  Dashboards: `docker compose --profile demo up` runs this with Prometheus and Grafana.

Press Ctrl-C to stop.
"""


if __name__ == "__main__":
    raise SystemExit(main())
