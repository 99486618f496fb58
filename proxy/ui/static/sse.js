// A small server-sent events parser (the WHATWG event stream rules), for fetch() bodies:
// EventSource can neither POST nor send an api-key header.
//
// Feed it text in pieces of any size (a piece may end anywhere, inside a line or between the
// "\r" and "\n" of one line ending); it returns each event once its blank line has arrived.

export class SSEParser {
  constructor() {
    this.buffer = "";
    this.data = [];
    this.event = "";
    this.id = "";
    this.sawData = false;
    this.first = true;
    this.pendingCR = false;
  }

  // Returns the events completed by `text`: [{event, data, id}].
  feed(text) {
    if (this.first && text.length) {
      this.first = false;
      if (text.charCodeAt(0) === 0xfeff) text = text.slice(1);
    }
    if (this.pendingCR && text.startsWith("\n")) text = text.slice(1);
    this.pendingCR = false;
    this.buffer += text;
    const events = [];
    let start = 0;
    for (;;) {
      const cr = this.buffer.indexOf("\r", start);
      const lf = this.buffer.indexOf("\n", start);
      if (cr < 0 && lf < 0) break;
      let end;
      let next;
      if (cr >= 0 && (lf < 0 || cr < lf)) {
        end = cr;
        if (cr + 1 === this.buffer.length) {
          // "\r" last: its "\n", if any, comes with the next piece.
          this.pendingCR = true;
          next = cr + 1;
        } else {
          next = this.buffer[cr + 1] === "\n" ? cr + 2 : cr + 1;
        }
      } else {
        end = lf;
        next = lf + 1;
      }
      const event = this.line(this.buffer.slice(start, end));
      if (event) events.push(event);
      start = next;
    }
    this.buffer = this.buffer.slice(start);
    return events;
  }

  line(line) {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") {
      this.data.push(value);
      this.sawData = true;
    } else if (field === "event") {
      this.event = value;
    } else if (field === "id" && !value.includes("\0")) {
      this.id = value;
    }
    return null;
  }

  dispatch() {
    const event = this.sawData ? { event: this.event || "message", data: this.data.join("\n"), id: this.id } : null;
    this.data = [];
    this.event = "";
    this.sawData = false;
    return event;
  }
}

// Reads a fetch Response's body as events; calls onEvent(event) for each, as it arrives.
// An event left unterminated when the body ends is dropped, as EventSource does.
export async function readEvents(response, onEvent) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder("utf-8");
  const parser = new SSEParser();
  for (;;) {
    const { value, done } = await reader.read();
    const text = done ? decoder.decode() : decoder.decode(value, { stream: true });
    for (const event of parser.feed(text)) onEvent(event);
    if (done) return;
  }
}
