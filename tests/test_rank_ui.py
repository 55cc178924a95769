"""People rank in the Prefect UI, through the real Prefect API: the rank stage's flow run pauses with a form per batch,
the test sends what the form would send, and the rankings artifact holds exactly that; bad submissions are refused
with the run still paused; a killed run keeps what was submitted and asks only the rest; an unanswered form times
out with what was ranked kept."""

from __future__ import annotations

import contextvars
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import REPO
from rank_fixtures import rank_context

from llm_core.preference.rank_stage import RANKINGS_FILE, RankingTimeout, batch_name

pytestmark = pytest.mark.usefixtures("prefect_harness")

RUN_FROM_FILE = """
import json, sys
from llm_core.preference.rank_stage import RankConfig
from llm_core.stage import StageContext
from tasks.stage_flow import run_stage_flow
raw = json.loads(open(sys.argv[1]).read())
run_stage_flow(StageContext(**{**raw, "config": RankConfig.model_validate(raw["config"])}))
"""  # the rank stage's flow in a process of its own, which the test kills


def client():
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def paused_form(run_name: str, after: set[str] = frozenset(), timeout_s: float = 90, log: Path | None = None) -> tuple:
    """(flow run id, input keyset, description, JSON schema) of the run's pause, once it is paused with a form
    other than those in `after`."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.exceptions import PrefectHTTPStatusError

    deadline = time.monotonic() + timeout_s
    with client() as c:
        while time.monotonic() < deadline:
            runs = c.read_flow_runs(flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[run_name])))
            for run in runs:
                keyset = run.state.state_details.run_input_keyset if run.state.is_paused() else None
                if keyset and keyset["schema"] not in after:
                    try:
                        return (run.id, keyset, json.loads(c.read_flow_run_input(run.id, keyset["description"])),
                                json.loads(c.read_flow_run_input(run.id, keyset["schema"])))
                    except PrefectHTTPStatusError as e:  # Prefect sets the paused state before it stores the form
                        if e.response.status_code != 404:
                            raise
            time.sleep(0.5)
    tail = log.read_text()[-3000:] if log else ""
    raise TimeoutError(f"flow run {run_name} did not pause with a new form in {timeout_s} s\n{tail}")


def in_thread(fn, *args) -> tuple[threading.Thread, dict]:
    """Run fn in a thread that sees this test's Prefect settings; the outcome lands in the returned dict."""
    outcome: dict = {}
    context = contextvars.copy_context()

    def target() -> None:
        try:
            outcome["result"] = context.run(fn, *args)
        except BaseException as e:  # noqa: BLE001 - the test inspects it
            outcome["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def finish(thread: threading.Thread, outcome: dict, timeout_s: float = 90) -> None:
    thread.join(timeout_s)
    assert not thread.is_alive(), f"the flow run did not end within {timeout_s} s of the last submission"
    assert "error" not in outcome, outcome.get("error")


def submit(run_id, **fields) -> None:
    from prefect.flow_runs import resume_flow_run

    resume_flow_run(run_id, run_input={"ranked_by": "", **fields})


def form(ranking1: str = "", ranking2: str = "", skip1: bool = False, skip2: bool = False, comment: str = "",
         ranked_by: str = "") -> dict:
    return {"prompt_1_ranking": ranking1, "prompt_1_skip": skip1, "prompt_1_comment": comment,
            "prompt_2_ranking": ranking2, "prompt_2_skip": skip2, "prompt_2_comment": "", "ranked_by": ranked_by}


def rows_of(ctx) -> list[dict]:
    return pq.read_table(os.path.join(ctx.output.uri, RANKINGS_FILE)).to_pylist()


def test_run_pauses_at_rank_and_the_artifact_holds_the_submitted_rankings(tmp_path, one_torch_thread):
    from tasks.stage_flow import run_stage_flow

    ctx = rank_context(tmp_path, labeler="ui")
    run_name = f"rank-{ctx.output.key}"
    thread, outcome = in_thread(run_stage_flow, ctx)

    run_id, keyset, description, schema = paused_form(run_name)
    assert "batch 1 of 2" in description and "### Prompt 2" in description
    shown = ctx.writer().read_json("items.json")["items"]
    for n, item in enumerate(shown[:2], 1):
        assert item["prompt"][-1]["content"] in description
        assert len(item["answers"]) == 3
        for i, answer in enumerate(item["answers"]):
            assert f"**{n}{'ABC'[i]}**" in description and answer.splitlines()[0] in description
    assert {"prompt_1_ranking", "prompt_2_skip", "prompt_1_comment", "ranked_by"} <= set(schema["properties"])

    # the server refuses letters that are not this batch's answers, and the run stays paused on the same form
    with pytest.raises(RuntimeError, match="Cannot resume"):
        submit(run_id, **form("A > B > Q", "ABC"))
    assert paused_form(run_name)[1] == keyset
    # a repeated answer and another prompt's answer: refused in the form, nothing of the batch kept
    submit(run_id, **form("A > A > B", "1A 2B 2C"))
    _, keyset2, description2, _ = paused_form(run_name, after={keyset["schema"]})
    assert "answer A is ranked twice" in description2
    assert "answer 1A belongs to prompt 1, not to prompt 2" in description2
    assert not ctx.writer().exists(batch_name(0))

    submit(run_id, **form("B > A = C", "", skip2=True, comment="B is clearest", ranked_by="ada"))
    run_id, keyset3, description3, _ = paused_form(run_name, after={keyset["schema"], keyset2["schema"]})
    assert "batch 2 of 2" in description3
    submit(run_id, **form("CBA", "2a 2c 2b"))
    finish(thread, outcome)

    rows = rows_of(ctx)
    assert [r["status"] for r in rows] == ["ranked", "skipped", "ranked", "ranked"]
    assert [r["prompt"][-1]["content"] for r in rows] == [i["prompt"][-1]["content"] for i in shown]
    assert [r["answers"] for r in rows] == [i["answers"] for i in shown]
    assert (rows[0]["ranking"], rows[0]["tiers"]) == ([1, 0, 2], [0, 1, 1])  # B > A = C: a tie, recorded
    assert rows[0]["pairs"] == [{"chosen": 1, "rejected": 0}, {"chosen": 1, "rejected": 2}]
    assert (rows[0]["labeler"], rows[0]["comment"]) == ("ui:ada", "B is clearest")
    assert rows[1]["ranking"] == [] and rows[1]["pairs"] == []
    assert rows[2]["ranking"] == [2, 1, 0] and len(rows[2]["pairs"]) == 3 and rows[2]["labeler"] == "ui"
    assert rows[3]["ranking"] == [0, 2, 1]
    manifest = ctx.store().manifest(ctx.output)
    assert manifest.counts["ranked"] == 3 and manifest.counts["pairs"] == 2 + 3 + 3
    assert manifest.metrics["rankings"] == 3


def test_a_killed_run_keeps_what_was_submitted_and_asks_only_the_rest(tmp_path):
    from prefect.settings import PREFECT_API_URL

    ctx = rank_context(tmp_path, labeler="ui")
    ctx_file = tmp_path / "ctx.json"
    ctx_file.write_text(ctx.model_dump_json(serialize_as_any=True))
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "PYTHONPATH": str(REPO)}
    log = (tmp_path / "killed.log").open("w")
    proc = subprocess.Popen([sys.executable, "-c", RUN_FROM_FILE, str(ctx_file)], env=env, cwd=REPO,
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        run_name = f"rank-{ctx.output.key}"
        run_id, keyset, _, _ = paused_form(run_name, timeout_s=120, log=tmp_path / "killed.log")
        submit(run_id, **form("C > B > A", "B = A > C"))
        paused_form(run_name, after={keyset["schema"]})  # batch 1 kept, the form of batch 2 is up
        assert ctx.writer().exists(batch_name(0))
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert not ctx.store().is_committed(ctx.output)
    from prefect.states import Crashed

    with client() as c:  # what the server's zombie automation does to a run whose process died
        c.set_flow_run_state(run_id, Crashed(message="killed by the test"), force=True)

    from tasks.stage_flow import run_stage_flow

    thread, outcome = in_thread(run_stage_flow, ctx)
    run_id, _, description, _ = paused_form(run_name, after={keyset["schema"]})
    assert "batch 2 of 2" in description  # batch 1 is not asked again
    submit(run_id, **form("ABC", "", skip2=True))
    finish(thread, outcome)
    rows = rows_of(ctx)
    assert [r["ranking"] for r in rows] == [[2, 1, 0], [1, 0, 2], [0, 1, 2], []]
    assert rows[1]["tiers"] == [0, 0, 1]
    assert ctx.store().manifest(ctx.output).counts["resumed_batches"] == 1


def test_an_unanswered_form_times_out_with_what_was_ranked_kept(tmp_path):
    from tasks.stage_flow import run_stage_flow

    ctx = rank_context(tmp_path, labeler="ui", timeout_s=3)
    thread, outcome = in_thread(run_stage_flow, ctx)
    run_id, keyset, _, _ = paused_form(f"rank-{ctx.output.key}")
    submit(run_id, **form("ABC", "CBA"))
    thread.join(90)
    assert isinstance(outcome.get("error"), RankingTimeout), outcome
    assert "2 of 4 prompts are ranked and kept" in str(outcome["error"])
    assert not ctx.store().is_committed(ctx.output) and ctx.writer().exists(batch_name(0))

    # on_timeout=commit: the same store, so batch 1 is taken as submitted; batch 2 times out and is marked so
    committed = rank_context(tmp_path, labeler="ui", timeout_s=3, on_timeout="commit")
    assert committed.output == ctx.output  # how the wait ends is not part of what the artifact is
    run_stage_flow(committed)
    rows = rows_of(committed)
    assert [r["status"] for r in rows] == ["ranked", "ranked", "timeout", "timeout"]
    assert ctx.store().manifest(ctx.output).counts["timeout"] == 2



@pytest.mark.slow
def test_the_full_pipeline_stops_at_rank_until_the_form_is_submitted(tmp_path):
    from flows.pipeline import full_pipeline
    from llm_core.pipeline import plan
    from ops.micro import micro_config

    config = micro_config(str(tmp_path / "artifacts"), extra=["rank.labeler=ui", "rank.poll_s=1"], targets=["rank"])
    rank = plan(config)["rank"]
    thread, outcome = in_thread(lambda: full_pipeline(config=config))
    run_id, _, description, schema = paused_form(f"rank-{rank.output.key}", timeout_s=300)
    store = rank.store()
    assert all(store.is_committed(ctx.output) for name, ctx in plan(config).items() if name != "rank")
    assert not store.is_committed(rank.output) and "batch 1 of 1" in description
    assert set(schema["properties"]) == {"prompt_1_ranking", "prompt_1_skip", "prompt_1_comment", "prompt_2_ranking",
                                         "prompt_2_skip", "prompt_2_comment", "ranked_by"}
    submit(run_id, **form("B A", "", skip2=True))
    finish(thread, outcome, timeout_s=120)
    assert outcome["result"]["rank"] == str(rank.output)
    assert [r["ranking"] for r in rows_of(rank)] == [[1, 0], []]
