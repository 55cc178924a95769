"""The web chat's API on a real server (uvicorn on loopback) with tiny models: streamed replies with their tool
calls, 8 chats at once that never mix tokens, the bounded queue (503) and client disconnects, feedback and arena
votes as rankings rows that reward_data reads, the leaderboard, bad input and the token, and `llmpipe web`'s
refusals."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from test_engine_tools import ids
from typer.testing import CliRunner
from web_fixtures import RLHF, SFT, TOOL_CALL, reward_data_counts, scripted_loader, serving, web_store

from llm_core.chat.chat_model import load_chat_model
from llm_core.chat.engine import Engine, SamplingParams
from llm_core.chat.template import render_prompt
from llm_core.corpus.champion import promote_by_hand
from llm_core.preference.rankings import append_rankings, chat_feedback_row, read_rankings
from llm_core.store import ArtifactStore
from llm_core.web.arena import leaderboard
from llm_core.web.models import default_chat_model, served_models
from llm_core.web.requests import WebSettings
from llm_core.web.worker import Busy, GenerationQueue, Job

pytestmark = pytest.mark.usefixtures("one_torch_thread")

HELLO = [{"role": "user", "content": "What is 12 times 3?"}]


def events(client: httpx.Client, path: str, body: dict) -> list[dict]:
    """The server-sent events of a streamed answer (raises on a 4xx/5xx)."""
    with client.stream("POST", path, json=body) as response:
        response.raise_for_status()
        return [json.loads(line[6:]) for line in response.iter_lines() if line.startswith("data: ")]


def test_the_default_model_is_the_newest_rlhf_else_the_newest_sft(tmp_path):
    store = web_store(tmp_path)
    assert default_chat_model(store) == RLHF
    assert [m.key for m in served_models(store)] == [RLHF, SFT]
    assert served_models(store, ["websft"])[0].block_size == 128
    only_sft = ArtifactStore(str(tmp_path / "other"))
    for stage in ("bpe", "sft"):
        store.fs.copy(f"{tmp_path}/{stage}", f"{tmp_path}/other/{stage}", recursive=True)
    assert default_chat_model(only_sft) == SFT
    with pytest.raises(ValueError, match="no rlhf or sft model"):
        default_chat_model(ArtifactStore(str(tmp_path / "empty")))
    with pytest.raises(ValueError, match="chat serves one of"):
        served_models(store, ["bpe/webtok000000"])


def test_the_champion_of_the_corpus_is_served_first_once_there_is_one(tmp_path):
    store = web_store(tmp_path)
    assert default_chat_model(store, "nightly") == RLHF  # no decision yet: the newest rlhf model
    promote_by_hand(store, "nightly", SFT, "the RL policy regressed on identity")
    assert default_chat_model(store, "nightly") == SFT
    assert default_chat_model(store, "other") == RLHF  # another corpus's champion is not this one's
    assert [m.key for m in served_models(store, corpus="nightly")] == [SFT, RLHF]


def test_a_reply_streams_token_by_token_with_its_tool_call_and_output(tmp_path):
    store = web_store(tmp_path)
    settings = WebSettings(feedback=tmp_path / "feedback.parquet")
    with serving(store, settings, scripted_loader({SFT: TOOL_CALL})) as url, httpx.Client(base_url=url, timeout=60) as client:
        got = events(client, "/api/chat", {"model": SFT, "messages": HELLO, "temperature": 0, "max_tokens": 40})
    assert [e["type"] for e in got[:2]] == ["queued", "start"] and got[-1]["type"] == "done"
    segments: list[list[str]] = []
    for e in got:
        if e["type"] == "token":
            if e["new"]:
                segments.append([e["kind"], ""])
            segments[-1][1] += e["text"]
    # the call streams piece by piece, then the real sandboxed interpreter's output, then the answer
    assert segments == [["python", "12*3"], ["output", "36"], ["text", "It is"]]
    assert sum(e["type"] == "token" for e in got) > len(segments)
    message = got[-1]["message"]
    assert message["content"] == "It is" and [p["kind"] for p in message["parts"]] == ["python", "output", "text"]
    assert got[-1]["stop"] == "end"


def test_eight_chats_at_once_all_finish_and_none_mixes_another_ones_tokens(tmp_path):
    store = web_store(tmp_path)
    settings = WebSettings(feedback=tmp_path / "feedback.parquet", max_active=4, max_pending=8, tools=False)
    prompts = [[{"role": "user", "content": f"Question {i}: what is {i} times 45?"}] for i in range(8)]
    with serving(store, settings) as url, httpx.Client(base_url=url, timeout=120) as client:
        def chat(i: int) -> list[dict]:
            return events(client, "/api/chat", {"model": RLHF, "messages": prompts[i], "temperature": 1.0,
                                                "top_k": None, "top_p": None, "max_tokens": 24, "seed": i})

        with ThreadPoolExecutor(8) as pool:
            streams = list(pool.map(chat, range(8)))
        assert client.get("/api/status").json()["done"] == 8
    model, tok, _ = load_chat_model(store, RLHF)
    alone = Engine(model, tok)
    for i, got in enumerate(streams):
        reference = list(alone.stream(render_prompt(tok, prompts[i]), SamplingParams(24, 1.0), seed=i))
        assert got[-1]["type"] == "done" and got[-1]["tokens"] == len(reference)
        assert "".join(e["text"] for e in got if e["type"] == "token") == tok.decode([t.id for t in reference])
    assert any(e["type"] == "queued" and e["ahead"] > 0 for s in streams for e in s), "4 run at once, 4 wait"


def looping_loader():
    """A model that writes 'It is' over and over, a little slowly: a reply that only its token bound ends."""
    a, b = ids("It is")[:2]
    return scripted_loader({SFT: {ids("<|im_sep|>")[0]: a, a: b, b: a}}, delay_s=0.05)


def test_the_queue_is_bounded_and_a_client_that_goes_away_stops_its_reply(tmp_path):
    store = web_store(tmp_path)
    settings = WebSettings(feedback=tmp_path / "f.parquet", max_active=1, max_pending=1, tools=False)
    body = {"model": SFT, "messages": HELLO, "max_tokens": 100}
    with serving(store, settings, looping_loader()) as url, httpx.Client(base_url=url, timeout=60) as client:
        with client.stream("POST", "/api/chat", json=body) as first:
            lines = first.iter_lines()
            assert '"start"' in next(line for line in lines if line.startswith("data:") and "queued" not in line)
            with client.stream("POST", "/api/chat", json=body) as second:
                waiting = second.iter_lines()  # kept: a dropped line iterator would close the connection
                assert '"ahead": 1' in next(waiting)
                third = client.post("/api/chat", json=body)
                assert third.status_code == 503 and "server busy" in third.json()["detail"]
        deadline = time.monotonic() + 30
        while (stats := client.get("/api/status").json())["cancelled"] < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert stats["cancelled"] == 2 and stats["done"] == 0 and stats["active"] == stats["pending"] == 0
        got = events(client, "/api/chat", {**body, "max_tokens": 5})  # the server goes on serving
        assert (got[-1]["stop"], got[-1]["tokens"]) == ("length", 5)


def test_with_no_room_to_wait_a_free_engine_still_takes_a_reply_and_the_next_is_refused(tmp_path):
    store = web_store(tmp_path)
    model, tok, _ = looping_loader()(store, SFT)
    queue = GenerationQueue(max_active=1, max_pending=0)
    seen: list[dict] = []
    job = Job(Engine(model, tok), render_prompt(tok, HELLO), SamplingParams(200), seen.append)
    queue.submit([job])
    with pytest.raises(Busy, match="at most 0 may wait"):
        queue.submit([Job(job.engine, job.prompt, job.params, seen.append)])
    job.cancelled.set()
    queue.close()
    assert seen[0] == {"type": "queued", "ahead": 0} and queue.stats()["done"] == 0


def test_bad_requests_get_a_4xx_with_a_reason_and_the_server_stays_up(tmp_path):
    store = web_store(tmp_path)
    settings = WebSettings(feedback=tmp_path / "f.parquet", token="s3cret", max_tokens=64, tools=False)
    with serving(store, settings) as url:
        bare = httpx.Client(base_url=url, timeout=60)
        missing = bare.get("/api/models")
        assert missing.status_code == 401 and "needs its token" in missing.json()["detail"]
        assert bare.get("/", headers={"Authorization": "Bearer nope"}).status_code == 401
        assert bare.get("/static/page.js").status_code == 401
        page = bare.get("/?token=s3cret")  # the page's address carries it once; a cookie carries it after
        assert page.status_code == 200 and "llmpipe_token" in page.headers["set-cookie"]
        assert bare.get("/static/page.js").status_code == 200
        client = httpx.Client(base_url=url, timeout=60, headers={"Authorization": "Bearer s3cret"})
        cases = {
            "empty message": ({"model": SFT, "messages": [{"role": "user", "content": "  "}]}, 422, "empty"),
            "1 MB message": ({"model": SFT, "messages": [{"role": "user", "content": "x" * 2**20}]}, 413, "at most"),
            "unknown model": ({"model": "bpe/webtok000000", "messages": HELLO}, 404, "unknown model"),
            "path as model": ({"model": "../../etc/passwd", "messages": HELLO}, 404, "unknown model"),
            "no messages": ({"model": SFT, "messages": []}, 422, "messages"),
            "unknown field": ({"model": SFT, "messages": HELLO, "stream": True}, 422, "stream"),
            "over max_tokens": ({"model": SFT, "messages": HELLO, "max_tokens": 65}, 422, "limit of 64"),
            "over the context": ({"model": SFT, "messages": [{"role": "user", "content": "word " * 100}]}, 413,
                                 "start a new chat"),
            "not alternating": ({"model": SFT, "messages": HELLO * 2}, 422, "alternate"),
            "ends with a reply": ({"model": SFT, "messages": [*HELLO, {"role": "assistant", "content": "36"}]}, 422,
                                  "end with the user's"),
        }
        for what, (body, status, reason) in cases.items():
            response = client.post("/api/chat", json=body)
            assert response.status_code == status and reason in response.json()["detail"], (what, response.text)
        malformed = client.post("/api/chat", content=b'{"model": "sft/', headers={"Content-Type": "application/json"})
        assert malformed.status_code == 400 and "not valid JSON" in malformed.json()["detail"]
        bad_vote = client.post("/api/arena/vote", json={"battle": "nope", "verdict": "A"})
        assert bad_vote.status_code == 404 and "no finished battle" in bad_vote.json()["detail"]
        bad_name = client.post("/api/feedback", json={"model": SFT, "messages": [*HELLO, {"role": "assistant",
                                                     "content": "36"}], "up": True, "name": "<script>"})
        assert bad_name.status_code == 422 and "name" in bad_name.json()["detail"]
        assert not (tmp_path / "f.parquet").exists()
        call_only = {"role": "assistant", "content": "", "parts": [{"kind": "python", "text": "12*3"},
                                                                   {"kind": "output", "text": "36"}]}
        turns = [*HELLO, call_only, {"role": "user", "content": "So?"}]  # a reply that was a tool call alone is fine
        got = events(client, "/api/chat", {"model": SFT, "messages": turns, "max_tokens": 4})
        assert got[-1]["type"] == "done"


def test_thumbs_edits_and_arena_votes_become_rankings_rows_that_reward_data_reads(tmp_path):
    store = web_store(tmp_path)
    feedback = tmp_path / "feedback" / "web.parquet"
    settings = WebSettings(feedback=feedback, tools=False)
    sampling = {"max_tokens": 12, "seed": 3}
    with serving(store, settings) as url, httpx.Client(base_url=url, timeout=60) as client:
        reply = events(client, "/api/chat", {"model": SFT, "messages": HELLO, **sampling})[-1]["message"]
        answered = [*HELLO, reply]
        assert client.post("/api/feedback", json={"model": SFT, "messages": answered, "up": True,
                                                  "name": "Ann"}).json() == {"saved": "rating", "rows": 1}
        edited = client.post("/api/feedback", json={"model": SFT, "messages": answered, "up": False,
                                                    "better": "It is 36.", "name": "Ann"})
        assert edited.json() == {"saved": "ranking", "rows": 2}
        verdicts = ["A", "B", "tie", "both_bad"]
        for verdict in verdicts:
            got = events(client, "/api/arena", {"messages": HELLO, **sampling})
            battle = got[0]["battle"]
            assert {e["side"] for e in got if e["type"] == "done"} == {"A", "B"}
            assert all("model" not in e and SFT not in json.dumps(e) for e in got), "the models stay hidden"
            better = "It is 36." if verdict == "both_bad" else ""
            voted = client.post("/api/arena/vote", json={"battle": battle, "verdict": verdict, "better": better,
                                                         "comment": "close call"}).json()
            assert sorted(voted["models"].values()) == [RLHF, SFT]
            again = client.post("/api/arena/vote", json={"battle": battle, "verdict": "A"})
            assert again.status_code == 409
        board = client.get("/api/leaderboard").json()
    assert board["votes"] == 4 and {s["model"] for s in board["standings"]} == {SFT, RLHF}
    rows = read_rankings(feedback)
    liked, better, *votes = rows
    assert (liked["status"], liked["rating"], liked["labeler"], liked["source"]) == ("rated", 1, "web:Ann",
                                                                                   f"chat:{SFT}")
    assert (better["answers"], better["ranking"]) == ([reply["content"], "It is 36."], [1, 0])
    assert [v["labeler"] for v in votes] == ["web:anonymous"] * 4 and votes[0]["comment"] == "close call"
    assert [len(v["pairs"]) for v in votes] == [1, 1, 0, 2]  # both bad with a better answer: it beats both
    assert votes[3]["rating"] == -1 and votes[3]["answers"][2] == "It is 36."

    counts, kept = reward_data_counts(feedback.parent, tmp_path / "artifacts")
    # kept: the edit and the 3 votes with pairs; rejected: the tie (no pairs); the lone thumbs up pairs with nothing
    label = f"rankings:{feedback.parent}"
    assert counts[f"{label}:input"] == 5 and counts[f"{label}:rejected:rankings:no_pairs"] == 1 and kept == 4


def test_the_leaderboard_ranks_the_stronger_model_first_with_intervals():
    prompt = [{"role": "user", "content": "hi"}]
    rows = []
    for i in range(60):  # x beats y 3 times in 4; y and z tie; a same-model battle says nothing
        x_wins, x_is_a = i % 4 != 0, i % 2 == 1
        rows.append({"source": "arena:sft/x,sft/y" if x_is_a else "arena:sft/y,sft/x", "status": "ranked",
                     "ranking": [0, 1] if x_wins == x_is_a else [1, 0], "tiers": [0, 1]})
        rows.append({"source": "arena:sft/y,sft/z", "status": "ranked", "ranking": [0, 1], "tiers": [0, 0]})
    rows.append({"source": "arena:sft/x,sft/x", "status": "ranked", "ranking": [0, 1], "tiers": [0, 1]})
    rows.append(chat_feedback_row(prompt, "hello", True))
    board = {s.model: s for s in leaderboard(rows, resamples=100)}
    x, y, z = board["sft/x"], board["sft/y"], board["sft/z"]
    assert (x.battles, x.wins, x.losses, y.battles, y.ties) == (60, 45, 15, 120, 60)
    assert x.win_rate == 0.75 and x.win_rate_ci[0] < 0.75 < x.win_rate_ci[1]
    assert x.rating > y.rating and abs(y.rating - z.rating) < 100
    assert x.rating_ci[0] < x.rating < x.rating_ci[1] and x.rating_ci[0] > y.rating_ci[0]
    assert leaderboard([]) == []


def test_appends_from_many_threads_all_land(tmp_path):
    path = tmp_path / "feedback.parquet"
    rows = [chat_feedback_row([{"role": "user", "content": f"q{i}"}], f"a{i}", i % 2 == 0) for i in range(16)]
    threads = [threading.Thread(target=append_rankings, args=(path, [row])) for row in rows]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(r["answers"][0] for r in read_rankings(path)) == sorted(f"a{i}" for i in range(16))


def test_llmpipe_web_refuses_a_public_address_without_a_token_and_an_unknown_model(tmp_path, monkeypatch):
    from cli.main import app

    web_store(tmp_path / "artifacts")
    monkeypatch.delenv("LLMPIPE_WEB_TOKEN", raising=False)
    result = CliRunner().invoke(app, ["web", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and result.output.strip().count("\n") == 0 and "--token" in result.output
    root = f"run.artifact_root={tmp_path / 'artifacts'}"
    result = CliRunner().invoke(app, ["web", "-m", "nosuchmodel", "-s", root])
    assert result.exit_code == 2 and "no committed artifact matches 'nosuchmodel'" in result.output
