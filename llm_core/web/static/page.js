// The web chat's page: chat, arena and leaderboard, on the pieces of base.js (loaded first).
// Text from a model or a person is only ever set with textContent (never parsed as HTML).
"use strict";

// ---- chat
function renderMessage(message, index) {
  const box = el("div", "msg " + message.role);
  box.append(el("span", "who", message.role === "user" ? "you" : "assistant"));
  const body = el("div", "body");
  box.append(body);
  if (message.role === "user") body.textContent = message.content;
  else new ReplyView(body).render(message);
  if (message.role === "assistant" && index !== undefined) box.append(rateControls(index));
  $("messages").append(box);
  return { box, body };
}
function redraw() {
  $("messages").replaceChildren();
  state.messages.forEach((m, i) => { if (m.role !== "system") renderMessage(m, i); });
}
function conversation() {
  const system = $("system").value.trim();
  return [...(system ? [{ role: "system", content: system }] : []), ...state.messages];
}

function rateControls(index) {
  const row = el("div", "rate");
  const status = el("span", "status");
  const send = async (up, better) => {
    status.textContent = "saving\u2026";
    const upto = conversation().slice(0, conversation().length - state.messages.length + index + 1);
    try {
      const out = await postJson("/api/feedback", { model: $("model").value, messages: upto, up, better, name: voter() });
      status.textContent = out.saved === "ranking" ? "better answer saved" : up ? "thanks: liked" : "thanks: disliked";
    } catch (e) { status.textContent = e.message; }
  };
  const up = el("button", "", "Good"); up.title = "a good reply"; up.onclick = () => send(true, "");
  const down = el("button", "", "Bad"); down.title = "a bad reply"; down.onclick = () => send(false, "");
  const edit = el("button", "", "Edit"); edit.title = "write a better answer";
  edit.onclick = () => {
    if (row.nextSibling && row.nextSibling.className === "edit") return;
    const box = el("div", "edit");
    const text = el("textarea"); text.rows = 3; text.value = state.messages[index].content;
    const save = el("button", "", "Save better answer");
    save.onclick = () => { send(false, text.value); box.remove(); };
    box.append(text, save);
    row.after(box);
  };
  row.append(up, down, edit, status);
  return row;
}

function sampling() {
  const number = (id) => ($(id).value === "" ? null : Number($(id).value));
  return { temperature: number("temperature"), top_k: number("top_k"), max_tokens: number("max_tokens") };
}

async function sendChat(text) {
  $("chat-error").textContent = "";
  state.messages.push({ role: "user", content: text });
  renderMessage(state.messages[state.messages.length - 1]);
  const { box, body } = renderMessage({ role: "assistant", content: "" });
  const view = new ReplyView(body);
  const waiting = el("span", "status", "");
  body.append(waiting);
  const controller = new AbortController();
  state.running = controller;
  setRunning(true);
  let message = null;
  try {
    await streamPost("/api/chat", { model: $("model").value, messages: conversation(), ...sampling() }, (ev) => {
      if (ev.type === "queued" && ev.ahead > 0) waiting.textContent = `waiting: ${ev.ahead} ahead`;
      else if (ev.type === "start") waiting.remove();
      else if (ev.type === "token") view.push(ev.kind, ev.text, ev.new);
      else if (ev.type === "done") message = ev.message;
      else if (ev.type === "error") throw new Error(ev.reason);
    }, controller.signal);
  } catch (e) {
    if (e.name !== "AbortError") $("chat-error").textContent = e.message;
  } finally {
    state.running = null;
    setRunning(false);
  }
  box.remove();
  if (!message && view.textOnly().trim()) message = { role: "assistant", content: view.textOnly() }; // stopped
  if (message) state.messages.push(message);
  else $("chat-input").value = state.messages.pop().content; // nothing came back: the message goes back to the box
  save();
  redraw();
}
function setRunning(on) { $("send").disabled = on; $("stop").disabled = !on; $("arena-send").disabled = on; }

// ---- arena
async function sendArena(prompt) {
  for (const side of "AB") { $("side-" + side).replaceChildren(); $("name-" + side).textContent = ""; }
  $("arena-error").textContent = ""; $("arena-result").textContent = ""; $("vote").hidden = true;
  $("arena-better").value = ""; $("arena-comment").value = "";
  const views = { A: new ReplyView($("side-A")), B: new ReplyView($("side-B")) };
  const done = new Set();
  let battle = null;
  setRunning(true);
  try {
    const system = $("system").value.trim();
    const messages = [...(system ? [{ role: "system", content: system }] : []), { role: "user", content: prompt }];
    await streamPost("/api/arena", { messages, ...sampling() }, (ev) => {
      if (ev.type === "battle") battle = ev.battle;
      else if (ev.type === "token") views[ev.side].push(ev.kind, ev.text, ev.new);
      else if (ev.type === "done") done.add(ev.side);
      else if (ev.type === "error") throw new Error(ev.reason);
    });
  } catch (e) {
    $("arena-error").textContent = e.message;
  } finally { setRunning(false); }
  if (battle && done.size === 2) { $("vote").hidden = false; $("vote").dataset.battle = battle; }
}
async function vote(verdict) {
  const body = { battle: $("vote").dataset.battle, verdict, better: $("arena-better").value,
                 comment: $("arena-comment").value, name: voter() };
  try {
    const out = await postJson("/api/arena/vote", body);
    $("vote").hidden = true;
    for (const side of "AB") $("name-" + side).textContent = "\u2014 " + out.models[side];
    $("arena-result").textContent = `Vote saved (${out.rows} rows in the feedback file).`;
  } catch (e) { $("arena-error").textContent = e.message; }
}

// ---- leaderboard
async function loadLeaderboard() {
  const response = await fetch("/api/leaderboard");
  if (!response.ok) { $("leaderboard-status").textContent = await reason(response); return; }
  const data = await response.json();
  const pct = (x) => (x * 100).toFixed(0) + "%";
  $("standings").replaceChildren(...data.standings.map((s, i) => {
    const row = el("tr");
    const cells = [i + 1, s.model, s.rating.toFixed(0), `${s.rating_ci[0].toFixed(0)} \u2013 ${s.rating_ci[1].toFixed(0)}`,
      pct(s.win_rate), `${pct(s.win_rate_ci[0])} \u2013 ${pct(s.win_rate_ci[1])}`, s.battles,
      `${s.wins} / ${s.ties} / ${s.losses}`];
    cells.forEach((c) => row.append(el("td", "", String(c))));
    return row;
  }));
  $("leaderboard-status").textContent = data.votes ? `${data.votes} votes between different models`
    : "No votes between two different models yet.";
}

// ---- set-up
function showTab(name) {
  document.querySelectorAll(".panel").forEach((p) => { p.hidden = p.id !== name; });
  document.querySelectorAll(".tab").forEach((t) => t.classList.toggle("active", t.dataset.tab === name));
  if (name === "leaderboard") loadLeaderboard();
}
function modelLabel(m) {
  const when = m.created ? m.created.slice(0, 16).replace("T", " ") : "";
  return [m.key, m.snapshot ? "snapshot " + m.snapshot : "", when].filter(Boolean).join(" \u00b7 ");
}
function defaultMaxTokens() {
  const m = state.models.find((x) => x.key === $("model").value);
  return m ? Math.min(state.maxTokens, Math.floor(m.block_size / 2)) : state.maxTokens;
}

async function start() {
  if (new URLSearchParams(location.search).has("token")) history.replaceState(null, "", location.pathname);
  const response = await fetch("/api/models");
  if (!response.ok) { $("chat-error").textContent = await reason(response); return; }
  const info = await response.json();
  state.models = info.models;
  state.maxTokens = info.max_tokens;
  $("model").replaceChildren(...info.models.map((m) => { const o = el("option", "", modelLabel(m)); o.value = m.key; return o; }));
  const s = saved();
  $("model").value = info.models.some((m) => m.key === s.model) ? s.model : info.default;
  for (const id of ["system", "name", "temperature", "top_k"]) if (s[id] !== undefined) $(id).value = s[id];
  $("max_tokens").value = s.max_tokens && s.model === $("model").value ? s.max_tokens : defaultMaxTokens();
  state.messages = s.model === $("model").value ? s.messages || [] : [];
  redraw();
  save();

  document.querySelectorAll(".tab").forEach((t) => { t.onclick = () => showTab(t.dataset.tab); });
  document.querySelectorAll("#vote [data-verdict]").forEach((b) => { b.onclick = () => vote(b.dataset.verdict); });
  $("model").onchange = () => { state.messages = []; $("max_tokens").value = defaultMaxTokens(); save(); redraw(); };
  for (const id of ["system", "name", "temperature", "top_k", "max_tokens"]) $(id).onchange = save;
  $("new-chat").onclick = () => { state.messages = []; $("chat-error").textContent = ""; save(); redraw(); };
  $("stop").onclick = () => state.running && state.running.abort();
  const submitOnEnter = (input, form) => input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); form.requestSubmit(); }
  });
  submitOnEnter($("chat-input"), $("chat-form"));
  submitOnEnter($("arena-input"), $("arena-form"));
  $("chat-form").onsubmit = (e) => {
    e.preventDefault();
    if (state.running) return;
    const text = $("chat-input").value;
    if (!text.trim()) { $("chat-error").textContent = "type a message first"; return; }
    $("chat-input").value = "";
    sendChat(text);
  };
  $("arena-form").onsubmit = (e) => {
    e.preventDefault();
    const text = $("arena-input").value;
    if (!text.trim()) { $("arena-error").textContent = "type a prompt first"; return; }
    sendArena(text);
  };
  showTab(location.hash.slice(1) || "chat");
}
start();
