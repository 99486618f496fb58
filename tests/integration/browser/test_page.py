"""The built-in page in headless Chromium against the proxy on its built-in simulator: the
comparison and the length series, read from the page and checked against the proxy's metrics."""

from __future__ import annotations

import itertools
import re
from collections.abc import Awaitable, Callable

from playwright.async_api import Page, expect

from tests.conftest import Running
from tests.faults.faultkit import total
from tests.integration.browser.conftest import Browser

StartProxy = Callable[..., Awaitable[Running]]
SERIES_LENGTHS = [100, 500, 1000, 2000, 4000, 6000]  # the page's default series
# Records, independently of the page's own numbers, when each pane first shows text.
WATCH_PANES = """
window.__firstText = {};
new MutationObserver(() => {
  for (const id of ["pane-stream", "pane-plain"]) {
    const out = document.querySelector(`#${id} [data-role=output]`);
    if (out && out.textContent.length && !(id in window.__firstText)) {
      window.__firstText[id] = performance.now();
    }
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


def seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+\.\d+) s", text.strip())
    assert match, text
    return float(match.group(1))


async def stat(page: Page, pane: str, name: str) -> str:
    return await page.locator(f"#{pane} [data-stat={name}]").inner_text()


# How far below the proxy's own figure the page's may read (display steps, scheduling).
AGREE = 0.1


async def open_page(browser: Browser, proxy: Running) -> Page:
    page = await browser.page()
    await page.add_init_script(WATCH_PANES)
    await page.goto(proxy.url + "/")
    await page.evaluate("window.pageReady")
    await expect(page.locator("#deployment")).to_have_value("gpt-4o")
    await expect(page.locator("#use-sim")).to_be_checked()  # the built-in simulator
    return page


async def test_comparison_and_series_on_the_simulator_agree_with_the_metrics(
        browser: Browser, start_proxy: StartProxy) -> None:
    proxy = await start_proxy("simulator")
    page = await open_page(browser, proxy)

    await page.get_by_role("button", name="Run both").click()
    await expect(page.locator("#compare-status")).to_have_text(re.compile("^Done"),
                                                               timeout=30_000)
    shown = await page.evaluate("window.__firstText")
    assert shown["pane-stream"] < shown["pane-plain"]
    streamed = {n: await stat(page, "pane-stream", n) for n in ("first", "total", "tokens",
                                                                 "finish")}
    plain = {n: await stat(page, "pane-plain", n) for n in ("first", "total", "tokens",
                                                             "finish")}
    assert streamed["finish"] == plain["finish"] == "stop"
    assert seconds(streamed["first"]) < seconds(plain["first"]) <= seconds(plain["total"])

    sample = proxy.registry
    assert total(sample, "aoai_proxy_requests_total", stream="true", status_code="200") == 1
    assert total(sample, "aoai_proxy_requests_total", stream="false", status_code="200") == 1
    assert total(sample, "aoai_proxy_tokens_total", token_type="completion") == \
        int(streamed["tokens"]) + int(plain["tokens"])
    assert total(sample, "aoai_proxy_finish_reasons_total", finish_reason="stop") == 2
    # The page measures from before its request leaves to after the text is on screen, and
    # shows 10 ms steps; the proxy's clock stops once its own last write has returned, which on
    # a busy machine can be after the browser already has the body. So the two agree within
    # scheduling noise below, and the page may add its own rendering time above.
    proxy_ttft = total(sample, "aoai_proxy_time_to_first_token_seconds_sum")
    assert proxy_ttft - AGREE <= seconds(streamed["first"]) < proxy_ttft + 1.0
    proxy_plain = total(sample, "aoai_proxy_request_duration_seconds_sum", stream="false")
    assert proxy_plain - AGREE <= seconds(plain["total"]) < proxy_plain + 1.0

    await page.get_by_role("tab", name="Head start by length").click()
    await expect(page.locator("#lengths")).to_have_value(", ".join(map(str, SERIES_LENGTHS)))
    await page.get_by_role("button", name="Run the series").click()
    # The promise: on the simulator the series finishes within a minute.
    await expect(page.locator("#series-status")).to_have_text(re.compile("^Done"),
                                                              timeout=60_000)
    rows = await page.locator("#series-table tbody tr").evaluate_all(
        "rows => rows.map(r => [...r.cells].map(c => c.textContent))")
    assert [int(r[0]) for r in rows] == SERIES_LENGTHS
    for cls in ("s-first", "s-total", "p-total"):
        assert await page.locator(f"#chart .{cls} circle").count() == len(SERIES_LENGTHS)
    assert await page.locator("#chart .ratios text").count() == len(SERIES_LENGTHS)
    received = [int(r[1]) for r in rows]
    assert received == sorted(received) and received[-1] > 20 * received[0]
    head_start = [float(r[5]) for r in rows]
    assert all(a < b for a, b in itertools.pairwise(head_start)), head_start
    sooner = [float(r[6].rstrip("×")) for r in rows]
    assert sooner[-1] > sooner[0] and sooner[-1] > 5

    count = len(SERIES_LENGTHS)
    assert total(sample, "aoai_proxy_requests_total", stream="true", status_code="200") == \
        1 + count
    assert total(sample, "aoai_proxy_requests_total", stream="false", status_code="200") == \
        1 + count
    assert total(sample, "aoai_proxy_time_to_first_token_seconds_count") == 1 + count
    series_ttft = total(sample, "aoai_proxy_time_to_first_token_seconds_sum") - proxy_ttft
    page_ttft = sum(float(r[2]) for r in rows)
    assert series_ttft - 0.006 * count <= page_ttft < series_ttft + 1.0 * count
    series_plain = total(sample, "aoai_proxy_request_duration_seconds_sum",
                         stream="false") - proxy_plain
    page_plain = sum(float(r[4]) for r in rows)
    assert series_plain - 0.006 * count <= page_plain < series_plain + 1.0 * count
    assert browser.errors == []


async def test_a_content_filter_cut_shows_the_text_before_it_and_the_category(
        browser: Browser, start_proxy: StartProxy) -> None:
    proxy = await start_proxy("simulator")
    page = await open_page(browser, proxy)
    await page.get_by_label("Ending").select_option("content_filter")
    await page.get_by_label("Output length (characters)", exact=True).fill("300")
    await page.get_by_role("button", name="Run both").click()
    await expect(page.locator("#compare-status")).to_have_text(re.compile("^Done"),
                                                               timeout=30_000)
    for pane in ("pane-stream", "pane-plain"):
        notice = page.locator(f"#{pane} [data-role=notice]")
        await expect(notice).to_be_visible()
        await expect(notice).to_contain_text("Content filter (violence)")
        text = await page.locator(f"#{pane} [data-role=output]").inner_text()
        assert text.startswith("Hello from the simulated")
        assert f"{len(text)} characters arrived before the cut" in await notice.inner_text()
        assert await stat(page, pane, "finish") == "content_filter"
    assert total(proxy.registry, "aoai_proxy_content_filter_events_total",
                 category="violence") == 2
    assert browser.errors == []


async def test_the_page_works_from_the_keyboard_alone(
        browser: Browser, start_proxy: StartProxy) -> None:
    proxy = await start_proxy("simulator")
    page = await open_page(browser, proxy)
    await page.get_by_label("Output length (characters)", exact=True).fill("100")
    await page.locator("#tab-compare").focus()
    await page.keyboard.press("ArrowRight")
    await expect(page.locator("#view-series")).to_be_visible()
    await expect(page.locator("#tab-series")).to_be_focused()
    await page.keyboard.press("ArrowLeft")
    await expect(page.locator("#view-compare")).to_be_visible()
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Run both")).to_be_focused()
    await page.keyboard.press("Enter")
    await expect(page.locator("#compare-status")).to_have_text(re.compile("^Done"),
                                                               timeout=30_000)
    await page.set_viewport_size({"width": 390, "height": 844})
    width = await page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390  # nothing overflows sideways at a phone's width
    assert browser.errors == []


async def test_responses_api_mode_streams_and_shows_a_filter_kill(
        browser: Browser, start_proxy: StartProxy) -> None:
    proxy = await start_proxy("simulator")
    page = await open_page(browser, proxy)
    await page.get_by_label("Responses API").check()
    await page.get_by_label("Output length (characters)", exact=True).fill("500")
    await page.get_by_role("button", name="Run both").click()
    await expect(page.locator("#compare-status")).to_have_text(re.compile("^Done"),
                                                               timeout=30_000)
    shown = await page.evaluate("window.__firstText")
    assert shown["pane-stream"] < shown["pane-plain"]
    for pane in ("pane-stream", "pane-plain"):
        assert await stat(page, pane, "finish") == "completed"
        assert (await page.locator(f"#{pane} [data-role=output]").inner_text()).startswith(
            "Hello from the simulated")
    assert await stat(page, "pane-stream", "tokens") == await stat(page, "pane-plain", "tokens")
    assert total(proxy.registry, "aoai_proxy_requests_total", status_code="200") == 2

    await page.get_by_label("Ending").select_option("content_filter")
    await page.get_by_role("button", name="Run both").click()
    await expect(page.locator("#compare-status")).to_have_text(re.compile("^Done"),
                                                               timeout=30_000)
    # A filtered Responses stream is killed: the reason is only in its last frame.
    notice = page.locator("#pane-stream [data-role=notice]")
    await expect(notice).to_contain_text("Content filter (content_policy_violation)")
    await expect(page.locator("#pane-plain [data-role=notice]")).to_contain_text(
        "Content filter (violence)")
    assert await stat(page, "pane-plain", "finish") == "incomplete: content_filter"
    assert browser.errors == []
