"""`demo` prints the page's address first, and that address opens the page in Chromium."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import sys
from pathlib import Path

from playwright.async_api import expect

from tests.faults.faultkit import free_port
from tests.integration.browser.conftest import Browser

ROOT = Path(__file__).parents[3]


async def test_demo_prints_the_page_address_first_and_the_page_opens(browser: Browser) -> None:
    port = free_port()
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "proxy", "demo", "--port", str(port), "--no-traffic", cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        async with asyncio.timeout(30):
            first = (await process.stdout.readline()).decode()
        match = re.match(r"Open (http://127\.0\.0\.1:\d+/) ", first)
        assert match and match.group(1) == f"http://127.0.0.1:{port}/", first
        page = await browser.page()
        await page.goto(match.group(1))
        await page.evaluate("window.pageReady")
        options = await page.locator("#deployment option").all_inner_texts()
        assert options == ["gpt-4o (simulated)", "gpt-4o-mini (simulated)"]
        await page.get_by_role("button", name="Run both").click()
        await expect(page.locator("#compare-status")).to_have_text(re.compile("^Done"),
                                                                   timeout=30_000)
        assert browser.errors == []
    finally:
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGINT)
        async with asyncio.timeout(20):
            await process.wait()
