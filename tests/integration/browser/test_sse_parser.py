"""The page's own SSE parser (proxy/ui/static/sse.js), run in Chromium on tricky streams."""

from __future__ import annotations

from typing import Any

from playwright.async_api import Page

from tests.conftest import Running
from tests.integration.browser.conftest import Browser

STREAM = ("\ufeff: a comment first\r\n"
          "event: response.created\r\n"
          "data: {\"a\":1}\r\n\r\n"
          "data:no space\rdata:  two spaces\r\r"
          "id: 7\nevent: named\ndata\ndata: naïve ✓ 😀\n\n"
          "unknown: field\nretry: 10\n\n"          # no data: no event
          "data: [DONE]\n\n"
          "data: unterminated")
EXPECTED = [
    {"event": "response.created", "data": '{"a":1}', "id": ""},
    {"event": "message", "data": "no space\n two spaces", "id": ""},
    {"event": "named", "data": "\nnaïve ✓ 😀", "id": "7"},
    {"event": "message", "data": "[DONE]", "id": "7"},
]

# Feeds the stream whole, cut in two at every position, and one character at a time.
FEED = """
async (stream) => {
  const { SSEParser } = await import("/_proxy/ui/sse.js");
  const run = (pieces) => { const p = new SSEParser(); return pieces.flatMap((x) => p.feed(x)); };
  const whole = run([stream]);
  const chars = [...stream];
  const cuts = [];
  for (let i = 0; i <= chars.length; i += 1) {
    cuts.push(run([chars.slice(0, i).join(""), chars.slice(i).join("")]));
  }
  return { whole, cuts, single: run(chars) };
}
"""

# The body as bytes in pieces that cut UTF-8 sequences apart, read with fetch's Response.
READ = """
async ({ stream, size }) => {
  const { readEvents } = await import("/_proxy/ui/sse.js");
  const bytes = new TextEncoder().encode(stream);
  const body = new ReadableStream({ start(controller) {
    for (let i = 0; i < bytes.length; i += size) controller.enqueue(bytes.slice(i, i + size));
    controller.close();
  } });
  const events = [];
  await readEvents(new Response(body), (e) => events.push(e));
  return events;
}
"""


async def page_on(browser: Browser, proxy: Running) -> Page:
    page = await browser.page()
    await page.goto(proxy.url + "/")
    return page


async def test_parser_gives_the_same_events_however_the_stream_is_cut(
        browser: Browser, proxy: Running) -> None:
    page = await page_on(browser, proxy)
    result: dict[str, Any] = await page.evaluate(FEED, STREAM)
    assert result["whole"] == EXPECTED
    assert result["single"] == EXPECTED
    for i, events in enumerate(result["cuts"]):
        assert events == EXPECTED, f"cut at {i}"
    assert browser.errors == []


async def test_reader_decodes_utf8_split_across_body_pieces(
        browser: Browser, proxy: Running) -> None:
    page = await page_on(browser, proxy)
    for size in (1, 2, 3, 5, 64):
        assert await page.evaluate(READ, {"stream": STREAM, "size": size}) == EXPECTED, size
    assert browser.errors == []
