"""The `report` stage: the report card of a run, for people, from the artifacts of its lineage.

It reads, through the store, every upstream artifact's manifest (stages ordered by their inputs, not by any registry)
and a few files the stages already write, and computes nothing new. The card, top to bottom:

- before/after: the eval artifact's figures for base -> SFT -> RL on the same suites, the change at each step and
  the chance or baseline level beside each; the reward model's figures beside its baselines in a table of their own
  (without an eval artifact, a note says so and the card goes on);
- charts (PNG files in the artifact, referenced by relative path): pretraining and SFT loss curves, eval bars per
  model, the data funnel per stage and filter, reward and KL per RL iteration;
- what changed since the previous report of the same `run.name` (figures and artifact keys); a few eval items with
  each model's output, those the models disagree on first; the time per stage;
- an appendix with each stage's raw counters, other metrics and own summary, once.

Output: `report.md` (also the stage result's markdown), `report.json` (figures and lineage keys, which the next
run's report compares against) and the PNG files.
"""

from __future__ import annotations

import heapq
import re
from typing import Any

from pydantic import Field

from llm_core.config import StageConfig
from llm_core.report import eval_tables as ev
from llm_core.report import plots
from llm_core.report.champion import with_champion
from llm_core.stage import Input, Stage, StageContext, StageResult, declared_stage
from llm_core.store import ArtifactReader, ArtifactStore, ArtifactWriter, Manifest
from llm_core.train.model_files import HISTORY_FILE
from llm_core.train.trainer import TrainHistory

MODEL_STAGES = ("rlhf", "reward", "sft", "pretrain")
EVAL_STAGE = "eval"
PROMOTE_STAGE = "promote"
REPORT_FILE, FIGURES_FILE = "report.md", "report.json"
LOSS_PNG, EVAL_PNG, FUNNEL_PNG, RL_PNG = "loss_curves.png", "eval_bars.png", "data_funnel.png", "rl_history.png"
CHANGE_TOLERANCE = 1e-9


class ReportConfig(StageConfig):
    sample_chats: int = Field(3, ge=0, description="eval items shown per suite, with each model's reply")


def headline_keys(stage: str, manifest: Manifest) -> list[str]:
    """The metrics the stage declares for the card's headline table (`Stage.headline`), those it has."""
    declared = declared_stage(stage)
    wanted = declared.headline if declared is not None else ()
    return sorted(manifest.metrics) if wanted is None else [k for k in wanted if k in manifest.metrics]


def stages_declaring(attribute: str, order: list[str]) -> list[str]:
    """The stages of `order` whose declaration sets `attribute` (e.g. `loss_curve`)."""
    return [s for s in order if getattr(declared_stage(s), attribute, False)]


def lineage_manifests(store: ArtifactStore, refs: list) -> dict[str, Manifest]:
    """Stage name -> manifest for every artifact upstream of `refs` (and the refs themselves)."""
    found: dict[str, Manifest] = {}
    for ref in refs:
        for _, m in store.lineage(ref):
            found.setdefault(m.stage, m)
    return found


def stage_order(manifests: dict[str, Manifest]) -> list[str]:
    """Stages in a topological order of their manifests' inputs; among stages whose inputs are all placed, the
    earlier-made artifact comes first."""
    chosen = {f"{m.stage}/{m.key}" for m in manifests.values()}  # a refresh's lineage holds older nights' artifacts
    deps = {s: {ref.split("/", 1)[0] for ref in m.inputs.values() if ref in chosen} for s, m in manifests.items()}
    ready = [(manifests[s].created_at, s) for s, d in deps.items() if not d]
    heapq.heapify(ready)
    order: list[str] = []
    while ready:
        _, stage = heapq.heappop(ready)
        order.append(stage)
        for s, d in deps.items():
            if stage in d:
                d.discard(stage)
                if not d:
                    heapq.heappush(ready, (manifests[s].created_at, s))
    if len(order) != len(manifests):
        raise ValueError(f"the lineage has an input cycle among {sorted(set(manifests) - set(order))}")
    return order


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.4f}" if abs(v) < 1000 else f"{v:,.0f}"
    return f"{v:,}" if isinstance(v, int) else str(v)


# -- what the upstream artifacts already hold


def funnel_steps(manifests: dict[str, Manifest], order: list[str]) -> list[tuple[str, int]]:
    """(label, records left) from the web records to the filtered documents, as each stage declares its steps
    (`Stage.funnel`: crawl, extract, each filter, dedup)."""
    return [step for stage in order if (declared := declared_stage(stage)) is not None
            for step in declared.funnel(manifests[stage])]


def training_histories(store: ArtifactStore, manifests: dict[str, Manifest],
                       order: list[str]) -> dict[str, tuple[TrainHistory, float | None]]:
    """Stage -> (loss history, baseline) for the language-model training stages (`Stage.loss_curve`) whose
    `history.json` holds train-loss rows."""
    found = {}
    for stage in stages_declaring("loss_curve", order):
        m = manifests[stage]
        if HISTORY_FILE not in m.files:
            continue
        data = artifact_reader(store, m).read_json(HISTORY_FILE)
        if isinstance(data, dict) and data.get("train") and "loss" in data["train"][0]:
            history = TrainHistory(train=data["train"], evals=data.get("evals", []))
            found[stage] = (history, m.metrics.get("unigram_entropy"))
    return found


def rl_log(store: ArtifactStore, manifests: dict[str, Manifest],
           order: list[str]) -> tuple[Manifest, list[dict[str, Any]], str] | None:
    """The RL stage's (`Stage.iteration_chart`) manifest, per-iteration log and the name of its reward column (PPO:
    `score`, GRPO: `reward`)."""
    m = next((manifests[s] for s in stages_declaring("iteration_chart", order)), None)
    if m is None or HISTORY_FILE not in m.files:
        return None
    log = artifact_reader(store, m).read_json(HISTORY_FILE)
    if not isinstance(log, list) or not log:
        return None
    key = next((k for k in ("score", "reward") if k in log[0]), None)
    return (m, log, key) if key is not None and "kl" in log[0] else None


def artifact_reader(store: ArtifactStore, manifest: Manifest) -> ArtifactReader:
    return store.reader(store.ref(manifest.stage, manifest.key))


# -- the previous run


def previous_report(store: ArtifactStore, run_name: str, key: str) -> tuple[Manifest, dict[str, Any]] | None:
    """The newest committed report of the same run name (other than this one) and its `report.json`."""
    earlier = [m for m in store.list("report") if m.extra.get("run_name") == run_name and m.key != key]
    if not earlier:
        return None
    m = earlier[-1]
    return m, artifact_reader(store, m).read_json(FIGURES_FILE)


def changes(before: dict[str, Any], now: dict[str, Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(figures that differ, stages whose artifact key differs) between two `report.json` contents."""
    fb, fn = before.get("figures", {}), now["figures"]
    figures = []
    for name in list(fn) + [n for n in fb if n not in fn]:
        a, b = fb.get(name), fn.get(name)
        if a is None or b is None or abs(b - a) > CHANGE_TOLERANCE:
            change = None if a is None or b is None else b - a
            figures.append({"figure": name, "before": a, "now": b, "change": change})
    lb, ln = before.get("lineage", {}), now["lineage"]
    keys = [{"stage": s, "before": lb.get(s), "now": ln.get(s)} for s in list(ln) + [s for s in lb if s not in ln]
            if lb.get(s) != ln.get(s)]
    return figures, keys


def changes_markdown(previous: Manifest, figures: list[dict[str, Any]], keys: list[dict[str, Any]]) -> list[str]:
    """Keys that differ, figures whose value moved (a table), and figures only one of the two runs has (named)."""
    moved = [f for f in figures if f["change"] is not None]
    new = [f["figure"] for f in figures if f["before"] is None]
    gone = [f["figure"] for f in figures if f["now"] is None]
    out = [f"Compared with the previous report of this run name, `report/{previous.key}` "
           f"({previous.created_at[:19].replace('T', ' ')} UTC): {len(keys)} artifact key(s) differ, "
           f"{len(moved)} figure(s) moved, {len(new)} are new and {len(gone)} are gone.", ""]
    if keys:
        out += ["| stage | key before | key now |", "|---|---|---|"]
        out += [f"| {k['stage']} | {_code(k['before'])} | {_code(k['now'])} |" for k in keys] + [""]
    if moved:
        out += ["| figure | before | now | change |", "|---|---|---|---|"]
        out += [f"| {f['figure']} | {_fmt(f['before'])} | {_fmt(f['now'])} | {f['change']:+.4f} |" for f in moved]
        out += [""]
    for label, names in (("New figures", new), ("Figures gone", gone)):
        if names:
            out += [f"{label}: " + ", ".join(f"`{n}`" for n in names), ""]
    return out


def _code(key: str | None) -> str:
    return f"`{key}`" if key else "—"


# -- the card


def timing_markdown(manifests: dict[str, Manifest], order: list[str]) -> list[str]:
    out = ["| stage | key | seconds | created |", "|---|---|---|---|"]
    total = 0.0
    for stage in order:
        m = manifests[stage]
        seconds = m.timings.get("seconds", 0.0)
        total += seconds
        out.append(f"| {stage} | `{m.key}` | {seconds:,.1f} | {m.created_at[:19]} |")
    return out + [f"| **total** | | {total:,.1f} | |"]


def headline_markdown(manifests: dict[str, Manifest], order: list[str]) -> list[str]:
    rows = [f"| {stage} | " + " · ".join(f"{k} {_fmt(manifests[stage].metrics[k])}"
                                        for k in headline_keys(stage, manifests[stage])) + " |"
            for stage in order if headline_keys(stage, manifests[stage])]
    return ["| stage | figures |", "|---|---|", *rows] if rows else []


def appendix_markdown(manifests: dict[str, Manifest], order: list[str], evals: ev.EvalResults) -> list[str]:
    """Each stage once: its raw counters, the metrics the card did not already show, and its own summary (the eval
    stage's summary is its results table, which the before/after table already shows)."""
    out = ["## Appendix: every stage's counters and summary", ""]
    for stage in order:
        m = manifests[stage]
        shown = set(headline_keys(stage, m)) | (evals.metric_keys if stage == EVAL_STAGE else set())
        other = {k: v for k, v in m.metrics.items() if k not in shown and m.counts.get(k) != v}  # not twice
        md = "" if stage == EVAL_STAGE and evals.figures else m.extra.get("markdown", "")
        if not (m.counts or other or md):
            continue
        out += [f"### {stage}", ""]
        if m.counts:
            out += ["counters: " + " · ".join(f"`{k}` {_fmt(v)}" for k, v in m.counts.items()), ""]
        if other:
            out += ["metrics: " + " · ".join(f"`{k}` {_fmt(v)}" for k, v in other.items()), ""]
        if md:
            if md.startswith("### "):  # the stage's own title: the heading above says it
                md = md.partition("\n")[2].lstrip("\n")
            out += [re.sub(r"(?m)^(#{3,}) ", r"#\1 ", md), ""]  # its headings one level down
    return out


class ReportStage(Stage):
    name = "report"
    config_model = ReportConfig
    version = "3"  # 3: the champion section (promote decision, forgetting table)
    run_card = True

    def input_stages(self, config: ReportConfig) -> dict[str, str | Input]:
        return {s: Input((s,), optional=True) for s in (*MODEL_STAGES, EVAL_STAGE, PROMOTE_STAGE)}

    def run(self, ctx: StageContext) -> StageResult:
        cfg: ReportConfig = ctx.config
        store = ctx.store()
        manifests = lineage_manifests(store, list(ctx.inputs.values()))
        order = stage_order(manifests)
        evals = ev.EvalResults()
        if EVAL_STAGE in ctx.inputs:
            evals = ev.read_eval(ctx.reader(EVAL_STAGE), with_items=cfg.sample_chats > 0)
        funnel = funnel_steps(manifests, order)
        writer = ctx.writer()
        charts = write_charts(writer, store, manifests, order, evals, funnel)
        record = figures_record(ctx.run.name, manifests, order, evals)
        previous = previous_report(store, ctx.run.name, ctx.output.key)
        changed = changes(previous[1], record) if previous is not None else ([], [])
        md = render_card(ctx.run.name, manifests, order, evals, cfg.sample_chats, charts, funnel,
                         changes_markdown(previous[0], *changed) if previous is not None else [])
        if PROMOTE_STAGE in ctx.inputs:
            md = with_champion(md, ctx.reader(PROMOTE_STAGE).manifest)
        writer.write_bytes(REPORT_FILE, md.encode())
        writer.write_json(FIGURES_FILE, record)
        return StageResult(
            counts={"stages": len(order), "figures": len(record["figures"]), "charts": len(charts),
                    "changed_figures": len(changed[0]), "changed_keys": len(changed[1])},
            markdown=md,
            extra={"run_name": ctx.run.name, "previous": previous[0].key if previous is not None else None},
        )


def write_charts(writer: ArtifactWriter, store: ArtifactStore, manifests: dict[str, Manifest], order: list[str],
                 evals: ev.EvalResults, funnel: list[tuple[str, int]]) -> dict[str, str]:
    """Write every chart there is data for into the artifact; returns file name -> caption."""
    pngs: dict[str, tuple[str, bytes]] = {}
    if histories := training_histories(store, manifests, order):
        pngs[LOSS_PNG] = ("loss curves", plots.loss_curves_png(histories))
    chat, reward, _ = ev.split_figures(evals.figures)  # the tool suites have their own table, not bars
    if chat or reward:
        models = ev.generative_models(chat) + [ev.REWARD_MODEL]
        pngs[EVAL_PNG] = ("eval figures per model", plots.eval_bars_png(chat + reward, models))
    if funnel:
        pngs[FUNNEL_PNG] = ("data funnel", plots.funnel_png(funnel))
    if (rl := rl_log(store, manifests, order)) is not None:
        manifest, log, reward_key = rl
        algorithm = str(manifest.config.get("algorithm", "rl")).upper()
        pngs[RL_PNG] = ("reward and KL per RL iteration", plots.rl_history_png(log, reward_key, algorithm))
    for name, (_, png) in pngs.items():
        writer.write_bytes(name, png)
    return {name: caption for name, (caption, _) in pngs.items()}


def figures_record(run_name: str, manifests: dict[str, Manifest], order: list[str],
                   evals: ev.EvalResults) -> dict[str, Any]:
    """`report.json`: the run name, the figures a later report compares (`stage:metric`, `eval:model/suite/metric`)
    and the artifact key of every stage."""
    headline = {f"{s}:{k}": manifests[s].metrics[k] for s in order for k in headline_keys(s, manifests[s])
                if manifests[s].metrics[k] is not None}
    return {"run": run_name,
            "figures": {**headline, **{f"eval:{k}": v for k, v in ev.figure_values(evals.figures).items()}},
            "lineage": {s: manifests[s].key for s in order}}


def render_card(run_name: str, manifests: dict[str, Manifest], order: list[str], evals: ev.EvalResults,
                per_suite: int, charts: dict[str, str], funnel: list[tuple[str, int]], changed: list[str]) -> str:
    """The whole `report.md`."""
    total = sum(manifests[s].timings.get("seconds", 0.0) for s in order)
    out = [f"# Report card: run `{run_name}`", "",
           f"{len(order)} stages, {total:,.0f} s of stage time in all; keys and times per stage below.", ""]
    chat, reward, tools = ev.split_figures(evals.figures)
    out += ["## Before and after: base → SFT → RL on the same evals", ""]
    if chat:
        out += ["Each figure with its 95% interval; ↑ higher is better, ↓ lower is better; the change at each "
                "step; the chance or baseline level beside it; items scored (and left out as contaminated).", "",
                ev.before_after_markdown(chat)]
    else:
        out += ["No eval results in this run's lineage (the `eval` stage is off or wrote no rows for the "
                "generative models): the training figures below are all there is.", ""]
    if tools:
        out += ["## Tool use: the same model with its tools and without", "",
                "Held-out questions no training conversation holds, answered with the Python and search tools and "
                "again with tool calls disabled; the answer is the reply's text outside the calls. Each figure with "
                "its 95% interval.", "", ev.tools_markdown(tools)]
    if reward:
        out += ["## Reward model on held-out preference pairs", "", ev.reward_markdown(reward)]
    if headline := headline_markdown(manifests, order):
        out += ["## Training figures (as each stage measured them on its own held-back data)", "", *headline, ""]
    if charts:
        out += ["## Charts", ""] + [f"![{caption}]({name})" for name, caption in charts.items()] + [""]
    if funnel:
        out += ["## Data funnel", "", " → ".join(f"{label} **{count:,}**" for label, count in funnel), ""]
    out += ["## Since the previous run", ""]
    out += changed or [f"No earlier report of run `{run_name}` in this store: nothing to compare with.", ""]
    if evals.items:
        out += ["## Examples from the evals", "", ev.examples_markdown(evals.items, per_suite)]
    out += ["## Time per stage and lineage", "", *timing_markdown(manifests, order), ""]
    out += appendix_markdown(manifests, order, evals)
    return "\n".join(out).rstrip() + "\n"
