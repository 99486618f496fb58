// One request through the proxy, streamed or not, for chat completions or the Responses API,
// and what came back: text, timings, tokens, how it ended, and a content filter's cut.
// The Responses events and endings read here are described in docs/responses-wire.md.

import { readEvents } from "./sse.js";

export const CHAT_API_VERSION = "2024-10-21";
// The simulator's words average about 5.5 characters: output length -> simulated tokens.
const SIM_CHARS_PER_TOKEN = 5.5;

// Options: {api: "chat"|"responses", deployment, prompt, stream, key, chars, sim}
// sim (the simulator's x-simulator controls) is null or {firstMs, tokenMs, scenario}.
export function buildRequest(o) {
  const headers = { "content-type": "application/json" };
  if (o.key) headers["api-key"] = o.key;
  if (o.sim) {
    const tokens = Math.max(1, Math.round(o.chars / SIM_CHARS_PER_TOKEN));
    // The content filter cuts halfway: ask for twice the tokens so the cut is at `chars`.
    const asked = o.sim.scenario === "content_filter" ? tokens * 2 : tokens;
    const parts = [`tokens=${asked}`, `first_token_delay_ms=${o.sim.firstMs}`,
      `token_delay_ms=${o.sim.tokenMs}`];
    if (o.sim.scenario && o.sim.scenario !== "stop") parts.push(`scenario=${o.sim.scenario}`);
    headers["x-simulator"] = parts.join("; ");
  }
  // A real model is asked for the length in words and capped near it in tokens.
  const limit = o.sim ? undefined : Math.ceil(o.chars / 3) + 16;
  const prompt = o.sim || !o.askLength ? o.prompt
    : `${o.prompt}\n\nAnswer in about ${o.chars} characters of plain prose.`;
  let url;
  let body;
  if (o.api === "responses") {
    url = "/openai/v1/responses";
    body = { model: o.deployment, input: prompt, stream: o.stream };
    if (limit) body.max_output_tokens = limit;
  } else {
    url = `/openai/deployments/${encodeURIComponent(o.deployment)}/chat/completions` +
      `?api-version=${CHAT_API_VERSION}`;
    body = { messages: [{ role: "user", content: prompt }], stream: o.stream };
    if (o.stream) body.stream_options = { include_usage: true };
    if (limit) body.max_tokens = limit;
  }
  return { url, init: { method: "POST", headers, body: JSON.stringify(body) } };
}

// The first category marked filtered in a content_filter_results object, or null.
export function filteredCategory(results) {
  if (!results || typeof results !== "object") return null;
  for (const [name, verdict] of Object.entries(results)) {
    if (verdict && typeof verdict === "object" && verdict.filtered === true) return name;
  }
  return null;
}

class Outcome {
  constructor(onText, started) {
    this.onText = onText;
    this.started = started;
    this.status = 0;
    this.text = "";
    this.firstText = null;   // seconds from the request to the first visible text
    this.total = null;       // seconds from the request to the end of the response
    this.tokens = null;      // output tokens reported by the service
    this.finish = null;
    this.filter = null;      // {category, message} when a content filter cut or blocked it
    this.error = null;
    this.rateLimitRemaining = null;
  }

  append(text) {
    if (!text) return;
    this.text += text;
    this.onText(text);
    if (this.firstText === null) this.firstText = (performance.now() - this.started) / 1000;
  }
}

export async function run(options, onText = () => {}) {
  const { url, init } = buildRequest(options);
  const out = new Outcome(onText, performance.now());
  try {
    const response = await fetch(url, init);
    out.status = response.status;
    out.rateLimitRemaining = response.headers.get("x-ratelimit-remaining-requests");
    const type = response.headers.get("content-type") || "";
    if (!response.ok) {
      readError(out, await response.json().catch(() => null));
    } else if (type.startsWith("text/event-stream")) {
      const read = options.api === "responses" ? responsesEvent : chatEvent;
      await readEvents(response, (event) => {
        if (event.data === "[DONE]") return;
        let data;
        try { data = JSON.parse(event.data); } catch { return; }
        read(out, data);
      });
    } else {
      const data = await response.json();
      (options.api === "responses" ? responsesBody : chatBody)(out, data);
    }
  } catch (err) {
    out.error = out.status ? `the response broke off (${err.message})`
      : `no response from the proxy (${err.message})`;
  }
  out.total = (performance.now() - out.started) / 1000;
  return out;
}

function readError(out, body) {
  const error = (body && body.error) || {};
  out.error = `${out.status} ${error.code || ""}: ${error.message || "no error message"}`;
  if (error.code === "content_filter") {
    const results = (error.innererror && error.innererror.content_filter_result) ||
      (body.content_filters && body.content_filters[0] &&
        body.content_filters[0].content_filter_results);
    out.filter = { category: filteredCategory(results) || "unknown", message: "the prompt was blocked" };
  }
}

function chatEvent(out, data) {
  if (data.error) {
    out.error = data.error.message || "the service sent an error event";
    return;
  }
  for (const choice of data.choices || []) {
    if ((choice.index || 0) !== 0) continue;
    if (choice.delta && typeof choice.delta.content === "string") out.append(choice.delta.content);
    if (choice.finish_reason) out.finish = choice.finish_reason;
    const category = filteredCategory(choice.content_filter_results);
    if (category) out.filter = { category, message: "the output filter cut the answer" };
  }
  if (data.usage) out.tokens = data.usage.completion_tokens;
}

function chatBody(out, data) {
  const choice = (data.choices || []).find((c) => (c.index || 0) === 0) || {};
  out.append((choice.message && choice.message.content) || "");
  out.finish = choice.finish_reason || null;
  const category = filteredCategory(choice.content_filter_results);
  if (category) out.filter = { category, message: "the output filter cut the answer" };
  if (data.usage) out.tokens = data.usage.completion_tokens;
}

function responsesEvent(out, data) {
  switch (data.type) {
    case "response.output_text.delta":
    case "response.refusal.delta":
      out.append(data.delta);
      break;
    case "response.completed":
    case "response.incomplete":
    case "response.failed":
      responseEnd(out, data.response || {});
      break;
    case "error": {
      // Sent nested ({error: {code, message}}) and, by some, at the top level.
      const error = data.error || data;
      out.error = error.message || error.code || "the service sent an error event";
      if (error.code === "content_policy_violation") {
        out.filter = { category: error.code, message: error.message || "the output filter cut the answer" };
      }
      break;
    }
    default:
      break;
  }
}

function responseEnd(out, response) {
  const reason = response.incomplete_details && response.incomplete_details.reason;
  out.finish = reason ? `${response.status}: ${reason}` : response.status || null;
  if (response.usage) out.tokens = response.usage.output_tokens;
  if (reason === "content_filter") {
    out.filter = { category: filtersCategory(response.content_filters) || "content_filter",
      message: "the output filter cut the answer" };
  }
  if (response.error && response.error.message) out.error = response.error.message;
}

function filtersCategory(filters) {
  for (const f of Array.isArray(filters) ? filters : []) {
    const category = filteredCategory(f && f.content_filter_results);
    if (category) return category;
  }
  return null;
}

function responsesBody(out, data) {
  for (const item of data.output || []) {
    if (item.type !== "message") continue;
    for (const part of item.content || []) {
      if (part.type === "output_text" || part.type === "refusal") out.append(part.text || part.refusal || "");
    }
  }
  responseEnd(out, data);
  const category = filtersCategory(data.content_filters);
  if (category && !out.filter) out.filter = { category, message: "the output filter cut the answer" };
}
