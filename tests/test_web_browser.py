"""The web chat as a person meets it, in headless Chromium: the page opened with the server's token, a message sent,
the reply seen streaming in with its Python call and output drawn inline, a thumbs up, then the arena's two
anonymous answers, a vote that names the models, the vote found in the rankings folder and read by reward_data.
Model text with HTML in it is shown as text. Screenshots land in bench/out/web/."""

from __future__ import annotations

import shutil

import pytest
from conftest import REPO
from test_engine_tools import chain
from web_fixtures import RLHF, SFT, TOOL_CALL, reward_data_counts, scripted_loader, serving, web_store

from llm_core.preference.rankings import read_rankings
from llm_core.web.requests import WebSettings

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")]

MARKUP = chain("<|im_sep|>", "<", "i", ">", "<|im_end|>")  # a model that answers `<i>`


def test_chat_stream_tools_thumbs_and_an_arena_vote_in_chromium(tmp_path):
    from ops.ui_form_check import headless_chromium, screenshot
    from ops.web_check import WINDOW, arena, chat, open_page, rate_last_reply, vote

    store = web_store(tmp_path / "artifacts")
    feedback = tmp_path / "feedback" / "web.parquet"
    settings = WebSettings(feedback=feedback, token="s3cret")
    out = REPO / "bench" / "out" / "web"
    out.mkdir(parents=True, exist_ok=True)
    loader = scripted_loader({SFT: TOOL_CALL, RLHF: MARKUP}, delay_s=0.05)
    with serving(store, settings, loader, [SFT, RLHF]) as url, headless_chromium(WINDOW) as page:
        open_page(page, f"{url}/?token=s3cret")
        reply = chat(page, "What is 12 times 3? <b>bold</b>")
        assert reply["calls"] == ["12*3"] and reply["outputs"] == ["36"] and reply["text"].endswith("It is")
        assert len(reply["lengths"]) > 3, f"the reply was drawn at once, not streamed: {reply['lengths']}"
        user = page.evaluate("document.querySelector('#messages .msg.user .body').innerHTML")
        assert user == "What is 12 times 3? &lt;b&gt;bold&lt;/b&gt;"  # shown as typed, never parsed
        assert rate_last_reply(page) == "thanks: liked"
        screenshot(page, out / "web-chat.png")

        page.evaluate("window.beforeReload = true; location.reload()")  # the conversation survives a reload
        # the old page still shows the chat until the new one replaces it: wait for the new page, its tabs wired
        page.wait_for("!window.beforeReload && document.querySelector('.tab').onclick !== null && "
                      "document.querySelectorAll('#messages .msg.assistant .call').length === 1", "the kept chat")

        answers = arena(page, "Say something in italics.")
        assert sorted([answers["A"], answers["B"]]) == ["12*336It is", "<i>"]
        assert set(answers["elements"]) <= {"span", "code"}, "model text is never parsed as HTML"
        result = vote(page, "A")
        assert {result["A"], result["B"]} == {f"\u2014 {SFT}", f"\u2014 {RLHF}"} and not result["error"]
        screenshot(page, out / "web-arena.png")

    liked, voted = read_rankings(feedback)
    assert (liked["status"], liked["rating"], liked["labeler"]) == ("rated", 1, liked["labeler"])
    assert liked["labeler"].startswith("web:anon-") and voted["labeler"] == liked["labeler"]
    winner = result["A"].removeprefix("\u2014 ")
    assert voted["source"].startswith(f"arena:{winner},") and voted["pairs"] == [{"chosen": 0, "rejected": 1}]
    assert voted["prompt"][-1]["content"] == "Say something in italics."
    counts, kept = reward_data_counts(feedback.parent, tmp_path / "artifacts")
    assert counts[f"rankings:{feedback.parent}:input"] == 1 and kept == 1  # the vote; the lone thumbs up waits
