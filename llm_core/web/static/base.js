// The web chat page's shared pieces: its state and saved settings, element helpers, the JSON + server-sent-events
// calls to llm_core/web/app.py, and a reply's view as it streams (page.js builds the chat, arena and leaderboard
// on them). Text from a model or a person is only ever set with textContent (never parsed as HTML).
"use strict";

const $ = (id) => document.getElementById(id);
const STORE = "llmpipe-chat";
const LABELS = { python: "python:", search: "search:", output: "\u2192" };
const state = { models: [], maxTokens: 256, messages: [], running: null };

function saved() {
  try { return JSON.parse(localStorage.getItem(STORE)) || {}; } catch { return {}; }
}
function save() {
  localStorage.setItem(STORE, JSON.stringify({
    model: $("model").value, system: $("system").value, name: $("name").value, messages: state.messages,
    temperature: $("temperature").value, top_k: $("top_k").value, max_tokens: $("max_tokens").value,
    anonymous: anonymousId(),
  }));
}
function anonymousId() {
  const s = saved();
  if (s.anonymous) return s.anonymous;
  const bytes = crypto.getRandomValues(new Uint8Array(4));
  return "anon-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}
function voter() { return $("name").value.trim() || anonymousId(); }

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

// POST JSON and read the reply's server-sent events; a 4xx/5xx answer throws its reason.
async function streamPost(url, body, onEvent, signal) {
  const response = await fetch(url, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body), signal,
  });
  if (!response.ok) throw new Error(await reason(response));
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const chunk = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of chunk.split("\n")) if (line.startsWith("data: ")) onEvent(JSON.parse(line.slice(6)));
    }
  }
}
async function reason(response) {
  try { return (await response.json()).detail || response.statusText; } catch { return response.statusText; }
}
async function postJson(url, body) {
  const response = await fetch(url, {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  if (!response.ok) throw new Error(await reason(response));
  return response.json();
}

// A reply as it streams: one element per segment (text, a tool call, a tool's output), and its parts.
class ReplyView {
  constructor(container) { this.container = container; this.parts = []; this.node = null; }
  push(kind, text, isNew) {
    if (isNew || !this.node) {
      this.node = kind === "text" ? el("span") : el("code", kind === "output" ? "output" : "call");
      if (kind !== "text") this.node.dataset.label = LABELS[kind] || kind + ":";
      this.container.append(this.node);
      this.parts.push({ kind, text: "" });
    }
    this.node.textContent += text;
    this.parts[this.parts.length - 1].text += text;
  }
  render(message) {
    const parts = message.parts || [{ kind: "text", text: message.content }];
    parts.forEach((p) => this.push(p.kind, p.text, true));
  }
  textOnly() { return this.parts.filter((p) => p.kind === "text").map((p) => p.text).join(""); }
}
