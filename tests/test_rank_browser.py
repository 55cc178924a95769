"""The ranking form as a person meets it: a Prefect server (SQLite) started by the test, the rank stage's flow run
paused at its first batch, and headless Chromium opening the run in the UI, pressing Resume and finding the form
with each prompt and its K answers. The screenshot lands in bench/out/ui/resume-form.png."""

from __future__ import annotations

import re
import shutil

import pytest
from conftest import REPO
from rank_fixtures import rank_context
from test_rank_ui import finish, form, in_thread, paused_form, submit

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("chromium") is None, reason="Debian's chromium is not installed")]


def test_chromium_finds_the_form_with_the_k_answers(tmp_path):
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from ops.local_stack import prefect_server
    from ops.ui_form_check import open_resume_form
    from tasks.stage_flow import run_stage_flow

    with (prefect_server(f"sqlite+aiosqlite:///{tmp_path / 'prefect.db'}", tmp_path) as api_url,
          temporary_settings(updates={PREFECT_API_URL: api_url})):
        ctx = rank_context(tmp_path, labeler="ui")
        thread, outcome = in_thread(run_stage_flow, ctx)
        run_id, keyset, *_ = paused_form(f"rank-{ctx.output.key}")
        text = open_resume_form(api_url.removesuffix("/api"), str(run_id), REPO / "bench" / "out" / "ui")

        shown = ctx.writer().read_json("items.json")["items"][:2]
        assert "batch 1 of 2" in text and "Prompt 2: ranking, best first" in text and "Your name" in text
        for n, item in enumerate(shown, 1):
            assert item["prompt"][-1]["content"] in text
            for i, answer in enumerate(item["answers"]):
                assert f"{n}{'ABC'[i]}" in text
                words = re.findall(r"[A-Za-z]{4,}", answer)
                assert not words or any(w in text for w in words), (answer, text)
        submit(run_id, **form("ABC", "", skip2=True))
        run_id, *_ = paused_form(f"rank-{ctx.output.key}", after={keyset["schema"]})
        submit(run_id, **form("", "", skip1=True, skip2=True))
        finish(thread, outcome)
