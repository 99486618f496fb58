"""A serving proxy process says which event loop it runs: uvloop by default, asyncio's own when
switched off (environment or `--event-loop`), in every worker too."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from pathlib import Path

from tests.conftest import Running, SpawnProxy
from tests.faults.faultkit import eventually, yaml_config
from tests.integration.test_cli import ROOT, free_port, run, wait_healthy

LINE = re.compile(rb"listening on http://127\.0\.0\.1:\d+ \(event loop: (\w+)\)")


def loops(stderr: bytes) -> list[bytes]:
    return LINE.findall(stderr)


async def test_the_default_is_uvloop_and_the_switch_turns_it_off(
        spawn_proxy: SpawnProxy, simulator: Running) -> None:
    def config(port: int) -> str:
        return yaml_config([{"name": "p", "endpoint": simulator.url,
                             "deployments": ["gpt-4o"]}], port)

    default = await spawn_proxy(config)
    stock = await spawn_proxy(config, env={"AOAI_PROXY_EVENT_LOOP": "asyncio"})
    assert await eventually(lambda: bool(loops(default.stderr) and loops(stock.stderr)))
    assert loops(default.stderr) == [b"uvloop"], default.output()
    assert loops(stock.stderr) == [b"asyncio"], stock.output()


async def test_every_worker_runs_the_loop_asked_for(tmp_path: Path, simulator: Running) -> None:
    port = free_port()
    config = tmp_path / "proxy.yaml"
    config.write_text(yaml_config([{"name": "p", "endpoint": simulator.url,
                                    "deployments": ["gpt-4o"]}], port))
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "--config", str(config), "--workers", "2",
        "--event-loop", "asyncio", cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
    assert process.stderr is not None
    seen = bytearray()
    try:
        # Each worker logs its line once it listens; wait for both (bounded), then stop.
        async with asyncio.timeout(60):
            while len(loops(seen)) < 2:
                line = await process.stderr.readline()
                if not line:
                    break
                seen += line
        await wait_healthy(f"http://127.0.0.1:{port}")
    finally:
        process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            _, err = await process.communicate()
    seen += err
    assert loops(seen) == [b"asyncio", b"asyncio"], seen.decode(errors="replace")


async def test_a_bad_choice_in_the_environment_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "proxy.yaml"
    config.write_text(yaml_config([{"name": "p", "endpoint": "http://127.0.0.1:9",
                                    "deployments": ["gpt-4o"]}], free_port()))
    code, _, err = await run("--config", str(config), env={"AOAI_PROXY_EVENT_LOOP": "trio"})
    assert code == 2
    assert "--event-loop: unknown event loop 'trio'" in err
