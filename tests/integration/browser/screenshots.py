"""Regenerate the README's screenshots of the page: `python3 -m tests.integration.browser.screenshots`.

Runs the proxy on its built-in simulator, runs both views in headless Chromium as a user would
and saves docs/img/page-compare.png and docs/img/page-series.png.
"""

from __future__ import annotations

import asyncio
import re
import sys
import tempfile
from pathlib import Path

from playwright.async_api import Page, async_playwright, expect

from proxy.app import create_app
from proxy.config import Config, UpstreamConfig
from proxy.runtime.server import start
from tests.integration.browser.conftest import CHROMIUM_ARGS, require_chromium

OUT = Path(__file__).parents[3] / "docs" / "img"


async def shoot(page: Page, name: str) -> None:
    await page.screenshot(path=str(OUT / name), full_page=True)
    print(OUT / name, (OUT / name).stat().st_size, "bytes")


async def main() -> int:
    executable = require_chromium()
    config = Config(upstreams=(UpstreamConfig(name="simulator", endpoint="simulator",
                                              deployments=("gpt-4o", "gpt-4o-mini")),),
                    access_log=False)
    runner, port = await start(create_app(config), "127.0.0.1", 0)
    try:
        async with async_playwright() as playwright:
            context = await playwright.chromium.launch_persistent_context(
                tempfile.mkdtemp(prefix="chromium-"), executable_path=executable,
                headless=True, args=CHROMIUM_ARGS, viewport={"width": 1280, "height": 800})
            page = await context.new_page()
            await page.goto(f"http://127.0.0.1:{port}/")
            await page.evaluate("window.pageReady")
            await page.get_by_label("Ending").select_option("content_filter")
            await page.get_by_role("button", name="Run both").click()
            await expect(page.locator("#compare-status")).to_have_text(re.compile("^Done"),
                                                                       timeout=60_000)
            await shoot(page, "page-compare.png")
            await page.get_by_label("Ending").select_option("stop")
            await page.get_by_role("tab", name="Head start by length").click()
            await page.get_by_role("button", name="Run the series").click()
            await expect(page.locator("#series-status")).to_have_text(re.compile("^Done"),
                                                                      timeout=60_000)
            await shoot(page, "page-series.png")
            await context.close()
    finally:
        await runner.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
