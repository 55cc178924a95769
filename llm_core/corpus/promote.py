"""The `promote` stage: after a train, make the new models the corpus's champion only if the evals say so.

The challenger (this run's base model, and its SFT and RL models when they were trained) is compared with the
champion it was continued from (carried over by the planner as `champion_*` inputs):

- bits per byte on every snapshot's held-out text (the val split of each snapshot's token shards, the same tokens
  for both models), measured here: `bpb:new` is this night's snapshot (learning the new data counts), `bpb:earlier`
  the mean over the earlier ones (forgetting); per snapshot, they are the forgetting table of the report card;
- `eval:MODEL/SUITE/METRIC` figures of the eval stage (e.g. `eval:sft/identity/accuracy`): this run's eval artifact
  against the champion's, both from the same eval config (the champion's decontamination is that of its own
  training data).

A gate (`promote.gates`: metric, tolerance) fails when the challenger is worse than the champion by more than the
tolerance, in the metric's direction (bits per byte: lower is better); a negative tolerance demands an improvement.
A gate whose figure the challenger lacks fails; one the champion lacks (or both: a snapshot too small to hold
back any text) is skipped, and says so. The challenger is
promoted when no gate fails; the first model of a corpus is promoted as there is nothing to compare. The decision,
the side-by-side table and the reasons are the artifact's tables and markdown, and a record in the corpus's
decision log (`champion.py`), which is what moves the champion. A refused challenger stays in the store.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from pydantic import Field

from llm_core.config import StageConfig, StrictModel
from llm_core.corpus.champion import CHAT_STAGES, record_decision
from llm_core.corpus.stage import CORPUS_FILE
from llm_core.manifest import parse_ref
from llm_core.stage import Input, Stage, StageContext, StageResult
from llm_core.store import ArtifactStore
from llm_core.tokenizer import TokenShards, load_tokenizer
from llm_core.train.evaluation import LMEvaluator
from llm_core.train.model_files import load_gpt

LOWER_IS_BETTER = ("bpb", "loss", "kl", "truncated_share", "leak")


class Gate(StrictModel):
    metric: str = Field(pattern=r"^(bpb:new|bpb:earlier|eval:.+)$",
                        description="bpb:new, bpb:earlier, or eval:MODEL/SUITE/METRIC from the eval stage")
    tolerance: float = Field(0.0, description="how much worse the challenger may be (negative: must improve)")


class PromoteConfig(StageConfig):
    gates: list[Gate] = Field(
        default_factory=lambda: [Gate(metric="bpb:new", tolerance=0.02), Gate(metric="bpb:earlier", tolerance=0.05)],
        description="every gate must hold for the challenger to become champion")
    bpb_tokens: int = Field(16384, ge=256, description="held-out tokens scored per snapshot")


def lower_is_better(metric: str) -> bool:
    return any(word in metric.rsplit("/", 1)[-1] for word in LOWER_IS_BETTER) or metric.startswith("bpb:")


def snapshot_bpb(store: ArtifactStore, corpus: dict[str, Any], model, tokenizer, max_tokens: int) -> dict[str, float]:
    """Bits per byte of `model` on the first `max_tokens` held-out (val) tokens of every snapshot of the corpus."""
    out = {}
    block = model.config.block_size
    for entry in corpus["snapshots"]:
        shards = TokenShards(store.reader(store.ref(*parse_ref(entry["tokens"]))))
        parts, have = [], 0
        for name in shards.files("val"):
            parts.append(np.asarray(shards.memmap(name)[: max_tokens + 1 - have]))
            have += len(parts[-1])
            if have > max_tokens:
                break
        tokens = np.concatenate(parts) if parts else np.empty(0, np.int64)
        if len(tokens) <= block:
            out[entry["snapshot"]] = float("nan")
            continue
        evaluator = LMEvaluator(tokens, block, max_tokens, 16, tokenizer.special_ids.values(), tokenizer.decode)
        with torch.no_grad():
            out[entry["snapshot"]] = evaluator(model.eval(), 0)["val_bpb"]
    return out


def bpb_figures(per_snapshot: dict[str, float], new: str) -> dict[str, float]:
    earlier = [v for s, v in per_snapshot.items() if s != new and not math.isnan(v)]
    figures = {"bpb:new": per_snapshot.get(new, float("nan"))}
    if earlier:
        figures["bpb:earlier"] = sum(earlier) / len(earlier)
    return figures


def eval_figures(store: ArtifactStore, eval_ref: str | None) -> dict[str, float]:
    if not eval_ref:
        return {}
    metrics = store.manifest(store.ref(*parse_ref(eval_ref))).metrics
    return {f"eval:{k}": v for k, v in metrics.items() if v is not None}


def judge(gates: list[Gate], challenger: dict[str, float], champion: dict[str, float]) -> tuple[bool, list[dict]]:
    """(promoted, one row per gate: both figures, the change, the tolerance, whether it holds and why)."""
    rows = []
    for gate in gates:
        new, old = challenger.get(gate.metric, float("nan")), champion.get(gate.metric, float("nan"))
        sign = -1.0 if lower_is_better(gate.metric) else 1.0
        if math.isnan(new) and math.isnan(old):
            held, why = True, "skipped: neither model has the figure (e.g. no held-out text)"
        elif math.isnan(new):
            held, why = False, "the challenger has no such figure"
        elif math.isnan(old):
            held, why = True, "skipped: the champion has no such figure"
        else:
            worse_by = sign * (old - new)
            held = worse_by <= gate.tolerance
            why = f"{'worse' if worse_by > 0 else 'better'} by {abs(worse_by):.4f} (tolerance {gate.tolerance:g})"
        rows.append({"metric": gate.metric, "champion": old, "challenger": new,
                     "change": new - old if not (math.isnan(new) or math.isnan(old)) else float("nan"),
                     "tolerance": gate.tolerance, "holds": held, "why": why})
    return all(r["holds"] for r in rows), rows


class PromoteStage(Stage):
    name = "promote"
    config_model = PromoteConfig
    version = "1"

    def input_stages(self, config: PromoteConfig) -> dict[str, str | Input]:
        """This run's models, its evals and its corpus; `champion_*` (the champion's models) are carried over by
        the planner on a refresh."""
        return {"corpus": "corpus", "tokenizer": "bpe", "pretrain": "pretrain",
                **{s: Input((s,), optional=True) for s in ("sft", "rlhf", "eval")}}

    def run(self, ctx: StageContext) -> StageResult:
        store = ctx.store()
        cfg: PromoteConfig = ctx.config
        corpus = ctx.reader("corpus").read_json(CORPUS_FILE)
        snapshot = corpus["snapshots"][-1]["snapshot"]
        tokenizer = load_tokenizer(ctx.reader("tokenizer"))
        models = {s: str(ctx.inputs[s]) if s in ctx.inputs else None for s in (*CHAT_STAGES, "eval")}
        champion = {s: str(ctx.inputs[f"champion_{s}"]) if f"champion_{s}" in ctx.inputs else None
                    for s in (*CHAT_STAGES, "eval")}
        bpb = {"challenger": snapshot_bpb(store, corpus, load_gpt(ctx.reader("pretrain")), tokenizer, cfg.bpb_tokens)}
        if champion["pretrain"]:
            base = load_gpt(store.reader(store.ref(*parse_ref(champion["pretrain"]))))
            bpb["champion"] = snapshot_bpb(store, corpus, base, tokenizer, cfg.bpb_tokens)
        forgetting = [{"snapshot": s, "champion": bpb.get("champion", {}).get(s, float("nan")),
                       "challenger": v, "new": s == snapshot} for s, v in bpb["challenger"].items()]
        if champion["pretrain"] is None:
            promoted, table = True, []
            reasons = [f"the first model of corpus {corpus['name']!r}: nothing to compare with"]
        else:
            challenger_figures = {**bpb_figures(bpb["challenger"], snapshot), **eval_figures(store, models["eval"])}
            champion_figures = {**bpb_figures(bpb["champion"], snapshot), **eval_figures(store, champion["eval"])}
            promoted, table = judge(cfg.gates, challenger_figures, champion_figures)
            reasons = [f"{r['metric']}: {r['why']}" for r in table if not r["holds"]] or \
                ["no gated metric fell by more than its tolerance"]
        decision = {"snapshot": snapshot, "promoted": promoted, "models": models, "champion_before": champion,
                    "by": f"promote/{ctx.output.key}", "reasons": reasons, "table": table, "forgetting": forgetting}
        record_decision(store, corpus["name"], decision, f"promote-{ctx.output.key}")
        return StageResult(
            counts={"promoted": int(promoted), "gates": len(table), "failed_gates": sum(not r["holds"] for r in table)},
            metrics={f"challenger_bpb:{r['snapshot']}": r["challenger"] for r in forgetting},
            tables={"decision": table, "forgetting": forgetting},
            markdown=decision_markdown(decision),
            extra={"corpus": corpus["name"], **{k: decision[k] for k in ("snapshot", "promoted", "models",
                                                                          "champion_before", "reasons")}},
        )


def _num(value: float) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.4f}"


def decision_markdown(decision: dict[str, Any]) -> str:
    """The decision line, the gate table and the forgetting table (bits per byte per snapshot)."""
    chat = next((decision["models"][s] for s in reversed(CHAT_STAGES) if decision["models"].get(s)), None)
    verdict = "**promoted**: it is the champion now" if decision["promoted"] else \
        "**refused**: the champion stays (the challenger stays in the store)"
    lines = [f"### Champion decision, snapshot `{decision['snapshot']}`", "",
             f"Challenger `{chat}` {verdict}. " + "; ".join(decision["reasons"]) + ".", ""]
    if decision["table"]:
        lines += ["| gated metric | champion | challenger | change | tolerance | holds |", "|---|---:|---:|---:|---:|---|"]
        lines += [f"| {r['metric']} | {_num(r['champion'])} | {_num(r['challenger'])} | {_num(r['change'])} | "
                  f"{r['tolerance']:g} | {'yes' if r['holds'] else 'no'}: {r['why']} |" for r in decision["table"]]
        lines.append("")
    lines += ["Forgetting: bits per byte on each snapshot's held-out text (lower is better).", "",
              "| snapshot | champion | challenger |", "|---|---:|---:|"]
    lines += [f"| {r['snapshot']}{' (new)' if r['new'] else ''} | {_num(r['champion'])} | {_num(r['challenger'])} |"
              for r in decision["forgetting"]]
    return "\n".join(lines)
