"""Use the web chat (`llmpipe web`) as a person does, in headless Chromium: send a chat message and watch the reply
stream in, then ask the arena and vote; keep what the page showed and a screenshot of each (the README's).

    .venv/bin/python -m ops.web_check URL OUT_DIR [CHAT_MESSAGE [ARENA_PROMPT]]

URL is the page's address (with `?token=...` when the server has a token). Writes `web-chat.png` and
`web-arena.png` into OUT_DIR. The tests drive the page with the same functions.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ops.ui_form_check import Page, headless_chromium, screenshot

WINDOW = "1000,760"
WATCH_REPLY = """(() => {
  window.__replyLengths = [];
  new MutationObserver(() => {
    const bodies = document.querySelectorAll('#messages .msg.assistant .body');
    if (bodies.length) window.__replyLengths.push(bodies[bodies.length - 1].textContent.length);
  }).observe(document.getElementById('messages'), {subtree: true, childList: true, characterData: true});
})()"""
LAST_REPLY = """(() => {
  const replies = document.querySelectorAll('#messages .msg.assistant');
  const last = replies[replies.length - 1];
  const texts = (selector) => [...last.querySelectorAll(selector)].map((n) => n.textContent);
  return {text: last.querySelector('.body').textContent, calls: texts('.call'), outputs: texts('.output'),
          elements: [...last.querySelectorAll('.body *')].map((n) => n.tagName.toLowerCase()),
          lengths: [...new Set(window.__replyLengths)]};
})()"""


def js(value: Any) -> str:
    """A Python value as a JavaScript literal."""
    return json.dumps(value)


def open_page(page: Page, url: str, timeout_s: float = 60) -> None:
    page.call("Page.navigate", url=url)
    page.wait_for("document.querySelectorAll('#model option').length > 0", "the model picker", timeout_s)


def chat(page: Page, message: str, timeout_s: float = 120) -> dict[str, Any]:
    """Send `message` in the chat tab and wait for the whole reply; what the page shows of it: its text, the tool
    calls and outputs, the tags of the elements inside it, and the lengths it had while it streamed."""
    page.evaluate("document.querySelector('[data-tab=chat]').click()")
    replies = page.evaluate("document.querySelectorAll('#messages .msg.assistant .rate').length")
    page.evaluate(WATCH_REPLY)
    page.evaluate(f"document.getElementById('chat-input').value = {js(message)}; "
                  "document.getElementById('chat-form').requestSubmit()")
    page.wait_for(f"document.querySelectorAll('#messages .msg.assistant .rate').length > {replies} || "
                  "document.getElementById('chat-error').textContent", "the reply", timeout_s)
    error = page.evaluate("document.getElementById('chat-error').textContent")
    if error:
        raise RuntimeError(f"the chat answered with an error: {error}")
    return page.evaluate(LAST_REPLY)


def rate_last_reply(page: Page, button: str = "Good", timeout_s: float = 30) -> str:
    """Press a rating button (Good, Bad) under the last reply; the status it shows once saved."""
    page.evaluate(f"""(() => {{ const rates = document.querySelectorAll('#messages .rate');
        [...rates[rates.length - 1].querySelectorAll('button')].find((b) => b.textContent === {js(button)}).click(); }})()""")
    status = "(() => { const s = document.querySelectorAll('#messages .rate .status'); return s[s.length - 1].textContent; })()"
    page.wait_for(f"!['', 'saving\u2026'].includes({status})", "the rating's status", timeout_s)
    return page.evaluate(status)


def arena(page: Page, prompt: str, timeout_s: float = 120) -> dict[str, Any]:
    """Ask both anonymous models in the arena tab and wait for the vote buttons; the two answers as shown."""
    page.evaluate("document.querySelector('[data-tab=arena]').click()")
    page.evaluate(f"document.getElementById('arena-input').value = {js(prompt)}; "
                  "document.getElementById('arena-form').requestSubmit()")
    page.wait_for("!document.getElementById('vote').hidden || document.getElementById('arena-error').textContent",
                  "the arena's vote buttons", timeout_s)
    error = page.evaluate("document.getElementById('arena-error').textContent")
    if error:
        raise RuntimeError(f"the arena answered with an error: {error}")
    return page.evaluate("""({A: document.getElementById('side-A').textContent,
        B: document.getElementById('side-B').textContent,
        elements: [...document.querySelectorAll('.answer *')].map((n) => n.tagName.toLowerCase())})""")


def vote(page: Page, verdict: str, better: str = "", timeout_s: float = 30) -> dict[str, str]:
    """Vote on the arena's battle (`A`, `B`, `tie` or `both_bad`); the model names revealed and the status line."""
    page.evaluate(f"document.getElementById('arena-better').value = {js(better)}; "
                  f"document.querySelector('#vote [data-verdict={verdict}]').click()")
    page.wait_for("document.getElementById('arena-result').textContent || "
                  "document.getElementById('arena-error').textContent", "the vote's result", timeout_s)
    return page.evaluate("""({A: document.getElementById('name-A').textContent,
        B: document.getElementById('name-B').textContent,
        result: document.getElementById('arena-result').textContent,
        error: document.getElementById('arena-error').textContent})""")


def main(url: str, out: Path, message: str, prompt: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with headless_chromium(WINDOW) as page:
        open_page(page, url)
        page.evaluate("document.getElementById('new-chat').click()")
        # greedy, so the pictures are the same every run; no system message and short replies, so that two turns
        # fit the tiny config's 128-token context
        page.evaluate("document.getElementById('temperature').value = 0; document.getElementById('system').value = ''; "
                      "document.getElementById('max_tokens').value = 40")
        for text in message.split("|"):
            print("chat:", json.dumps(chat(page, text), ensure_ascii=False))
        screenshot(page, out / "web-chat.png")
        print("arena:", json.dumps(arena(page, prompt), ensure_ascii=False))
        print("vote:", json.dumps(vote(page, "A"), ensure_ascii=False))
        screenshot(page, out / "web-arena.png")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "What is 347 times 29?",
         sys.argv[4] if len(sys.argv) > 4 else "Who are you?")
