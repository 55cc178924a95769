"""The `report` stage: one markdown report card of the whole run, from the manifests of its lineage.

It reads, through the store, every upstream artifact's manifest (the lineage of the trained models): counts (the
data funnel per stage and reason), metrics (tokenizer compression, base validation loss and bits per byte, SFT eval
loss, reward-model accuracy beside the length baseline, RL reward and KL before/after), timings, keys; and the sample
replies each model stage wrote. It computes nothing new and trains nothing. Output: `report.md` (also the stage
result's markdown) and `report.json` (the headline figures).
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from llm_core.config import StageConfig
from llm_core.stage import Stage, StageContext, StageResult
from llm_core.store import ArtifactStore, Manifest

MODEL_STAGES = ("rlhf", "reward", "sft", "pretrain")
HEADLINE: dict[str, list[str] | None] = {
    "bpe": None,  # all of them: bytes per token per language, ours beside gpt2 and cl100k
    "pretrain": ["val_loss", "val_bpb", "unigram_entropy", "params", "tokens_per_s"],
    "sft": ["first_val_loss", "val_loss", "ends_with_im_end"],
    "reward": ["accuracy/all", "length_baseline/all", "accuracy/hh_rlhf", "length_baseline/hh_rlhf",
               "accuracy/keyword", "length_baseline/keyword"],
    "rlhf": ["before_reward", "after_reward", "before_kl", "after_kl", "before_finished", "after_finished"],
}


def headline_keys(stage: str, manifest: Manifest) -> list[str]:
    if stage not in HEADLINE:
        return []
    wanted = HEADLINE[stage]
    return sorted(manifest.metrics) if wanted is None else [k for k in wanted if k in manifest.metrics]


SAMPLE_FILES = {"pretrain": "history.json", "sft": "samples.json", "rlhf": "samples.json"}


class ReportConfig(StageConfig):
    sample_chats: int = Field(3, ge=0, description="sample replies shown per model")


def lineage_manifests(store: ArtifactStore, refs: list) -> dict[str, Manifest]:
    """Stage name -> manifest for every artifact upstream of `refs` (and the refs themselves)."""
    found: dict[str, Manifest] = {}
    for ref in refs:
        for _, m in store.lineage(ref):
            found.setdefault(m.stage, m)
    return found


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:,.4f}" if abs(v) < 1000 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


def funnel_rows(manifests: dict[str, Manifest], order: list[str]) -> list[dict[str, Any]]:
    rows = []
    for stage in order:
        m = manifests.get(stage)
        if m is None:
            continue
        for name, value in m.counts.items():
            rows.append({"stage": stage, "count": name, "value": value})
    return rows


def sample_rows(store: ArtifactStore, manifests: dict[str, Manifest], limit: int) -> list[dict[str, str]]:
    rows = []
    for stage, name in SAMPLE_FILES.items():
        m = manifests.get(stage)
        if m is None or name not in m.files:
            continue
        data = store.reader(store.ref(m.stage, m.key)).read_json(name)
        items = data.get("samples", []) if isinstance(data, dict) else data
        for s in items[:limit]:
            prompt = s.get("prompt", "")
            reply = s.get("rl_reply", s.get("reply", s.get("continuation", "")))
            rows.append({"model": stage, "prompt": str(prompt)[:200], "reply": str(reply)[:300]})
    return rows


def render_report(manifests: dict[str, Manifest], order: list[str], samples: list[dict[str, str]]) -> str:
    present = [s for s in order if s in manifests]
    out = ["# Report card", ""]
    out += ["## Headline figures", "", "| stage | figure | value |", "|---|---|---|"]
    for stage in present:
        for key in headline_keys(stage, manifests[stage]):
            out.append(f"| {stage} | {key} | {_fmt(manifests[stage].metrics[key])} |")
    out += ["", "## Data funnel (counts per stage)", "", "| stage | count | value |", "|---|---|---|"]
    out += [f"| {r['stage']} | {r['count']} | {_fmt(r['value'])} |" for r in funnel_rows(manifests, present)]
    out += ["", "## Time per stage and lineage", "", "| stage | key | seconds | created |", "|---|---|---|---|"]
    total = 0.0
    for stage in present:
        m = manifests[stage]
        seconds = m.timings.get("seconds", 0.0)
        total += seconds
        out.append(f"| {stage} | `{m.key}` | {seconds:,.1f} | {m.created_at[:19]} |")
    out.append(f"| **total** | | {total:,.1f} | |")
    if samples:
        out += ["", "## Sample replies", ""]
        out += [f"- **{s['model']}** — user: {s['prompt']!r}\n  → {s['reply']!r}" for s in samples]
    for stage in present:
        md = manifests[stage].extra.get("markdown")
        if md:
            out += ["", f"## {stage}", "", md.replace("\n### ", "\n#### ").removeprefix("### ")]
    return "\n".join(out) + "\n"


class ReportStage(Stage):
    name = "report"
    config_model = ReportConfig
    version = "1"

    def input_stages(self, config: Any) -> dict[str, str]:
        return {s: s for s in MODEL_STAGES if getattr(config, s).enabled}

    def run(self, ctx: StageContext) -> StageResult:
        from llm_core.registry import STAGES

        cfg: ReportConfig = ctx.config
        store = ctx.store()
        manifests = lineage_manifests(store, list(ctx.inputs.values()))
        order = [s for s in STAGES if s in manifests]
        samples = sample_rows(store, manifests, cfg.sample_chats)
        md = render_report(manifests, order, samples)
        writer = ctx.writer()
        writer.write_bytes("report.md", md.encode())
        headline = {f"{stage}:{k}": manifests[stage].metrics[k] for stage in order
                    for k in headline_keys(stage, manifests[stage])}
        writer.write_json("report.json", {"headline": headline, "lineage": {s: manifests[s].key for s in order}})
        return StageResult(
            counts={"stages": len(order)},
            metrics=headline,
            tables={"funnel": funnel_rows(manifests, order), "samples": samples,
                    "timings": [{"stage": s, "seconds": manifests[s].timings.get("seconds", 0.0)} for s in order]},
            markdown=md,
        )
