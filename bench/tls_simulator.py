"""The built-in simulator behind TLS, for `python3 -m bench --tls`: every real Azure upstream is
https, and a TLS read costs differently on each event loop (bench/README.md, "Levers").

`python3 -m bench.tls_simulator --port 8443` (the test certificate in tests/tls, for 127.0.0.1;
the simulator's own defaults are the plain one's in bench/targets.py)
"""

from __future__ import annotations

import argparse
import asyncio
import ssl

from aiohttp import web

from proxy.runtime.server import wait_for_signal
from proxy.simulator import SimulatorConfig, create_simulator_app

from .procs import ROOT

CERT = ROOT / "tests" / "tls" / "cert.pem"
"""Self-signed for 127.0.0.1; targets trust it through `SSL_CERT_FILE`."""


async def serve(port: int) -> None:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(CERT, CERT.with_name("key.pem"))
    config = SimulatorConfig(tokens=200, first_token_delay=0.2, token_delay=0.005)
    runner = web.AppRunner(create_simulator_app(config), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context).start()
    try:
        await wait_for_signal()
    finally:
        await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
