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
from proxy.config import (
    Config,
    ConfigError,
    ListenConfig,
    SimulatorCapacity,
    UpstreamConfig,
    load_config,
)
from proxy.runtime import event_loop
from proxy.runtime.server import serve, start, wait_for_signal
from proxy.runtime.workers import Supervisor, worker_count, worker_registries
from proxy.traffic import options as loadgen_options
from proxy.vocabulary import DEFAULT_API_VERSION, DEFAULT_DEPLOYMENTS

log = logging.getLogger("aoai_stream_proxy")
DEMO_DEPLOYMENTS = DEFAULT_DEPLOYMENTS
# The demo's sample traffic asks for about 12,000 tokens a minute; its first region takes less
# than half of that, so a new user sees the proxy fail over to the second region (and come
# back once the first region's minute has moved on) within the first minute.
DEMO_PRIMARY_TPM = 5000


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
    # No default here: the simulator's own applies (its module is loaded only to simulate).
    simulate.add_argument("--tokens", type=int, default=None,
                          help="content chunks per completion (default: the simulator's)")
    simulate.add_argument("--first-token-delay", type=float, default=0.0, metavar="SECONDS")
    simulate.add_argument("--token-delay", type=float, default=0.0, metavar="SECONDS")
    simulate.add_argument("--api-key", action="append", default=[],
                          help="accept only this key (repeatable; default: any key)")
    simulate.add_argument("--rpm", type=_positive, default=None, metavar="N",
                          help="requests per sliding minute before answering 429 (default: "
                               "no quota)")
    simulate.add_argument("--tpm", type=_positive, default=None, metavar="N",
                          help="tokens per sliding minute before answering 429")
    demo = commands.add_parser("demo", help="simulator + proxy + sample traffic, no Azure needed")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--no-traffic", action="store_true", help="do not send sample requests")
    _event_loop_option(demo, defaults=True)
    loadgen_options.add_arguments(
        commands.add_parser("loadgen", help="send a realistic request mix"))
    return parser


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


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
            from proxy.traffic import generator  # a tool: loaded only when it runs

            return generator.main(args)
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
    from proxy.simulator import SimulatorConfig, create_simulator_app  # loaded only to simulate

    tokens = {} if args.tokens is None else {"tokens": args.tokens}
    config = SimulatorConfig(first_token_delay=args.first_token_delay,
                             token_delay=args.token_delay, api_keys=tuple(args.api_key),
                             rpm=args.rpm, tpm=args.tpm, **tokens)
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
        upstreams=(
            UpstreamConfig(name="sim-eastus", endpoint="simulator", deployments=DEMO_DEPLOYMENTS,
                           priority=0, simulator=SimulatorCapacity(tpm=DEMO_PRIMARY_TPM)),
            UpstreamConfig(name="sim-sweden", endpoint="simulator", deployments=DEMO_DEPLOYMENTS,
                           priority=1),
        ),
        source="demo")
    runner, port = await start(create_app(config), args.host, args.port)
    base = f"http://{args.host}:{port}"
    print(_demo_banner(base), flush=True)
    traffic = None
    if not args.no_traffic:
        from proxy.traffic.generator import run_loadgen  # the demo's sample traffic

        traffic = asyncio.create_task(run_loadgen(
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
    return f"""Open {base}/ to see why streaming matters (stream vs no stream, in your browser).

aoai-stream-proxy demo: the proxy is forwarding to two built-in simulated Azure OpenAI
regions (deployments {", ".join(DEMO_DEPLOYMENTS)}); sample traffic is flowing through it, and
each request it finishes is logged below as one JSON line ("upstream" says which region).
sim-eastus is tried first but allows only {DEMO_PRIMARY_TPM:,} tokens a minute: once it answers
429 the proxy sends the rest to sim-sweden until eastus's retry-after has passed, and clients
never see that 429 (watch aoai_proxy_failovers_total and x-aoai-proxy-upstream).

  Metrics      {base}/metrics
  Health       {base}/healthz
  Try a stream:
    curl -N '{base}/openai/deployments/gpt-4o/chat/completions?api-version={DEFAULT_API_VERSION}' \\
      -H 'api-key: any' -H 'content-type: application/json' \\
      -d '{{"messages":[{{"role":"user","content":"hi"}}],"stream":true}}'
  Or point openai-python at it:
    AzureOpenAI(azure_endpoint="{base}", api_key="any", api_version="{DEFAULT_API_VERSION}")
  Dashboards: `docker compose --profile demo up` runs this with Prometheus and Grafana.

Press Ctrl-C to stop.
"""


if __name__ == "__main__":
    raise SystemExit(main())
