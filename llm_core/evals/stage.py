"""The `eval` stage: the base model, the chat model, the RL policy and the reward model on the same suites.

One generic stage, not one per model: it evaluates every model artifact it is given (`base`, `sft`, `rlhf` for the
GPT suites, `reward` for preference pairs) and commits one artifact:

    results.parquet   one row per model x suite x metric: value, items scored, 95% interval, the chance or baseline
                      level beside it, items left out as contaminated (schema `EVAL_RESULTS`)
    items.parquet     what every model answered to every item, correct or not and why, contaminated or not
                      (schema `EVAL_ITEMS`), so a person can read what each model said

Suites (see `chat_suites` and `lm_suites`): bits per byte per text group and multiple choice (every GPT model);
identity, "I don't know" on made-up entities beside over-refusal on known questions, held-out sums, GSM8K, the
`<|im_end|>` rate and special-token leaks (every GPT model, through the chat template, greedy by default); the tool
suites, each asked with the tools and without (`tool_suites`: the chat models SFT and RL, when the tokenizer has
the tool tokens; search needs the `index` artifact); reward accuracy per source on held-back pairs beside "longer
wins" and "shorter wins", and the share of pairs cut by the context; RL reward, KL, reply end rate and length on the
RL stage's held-out prompts before (SFT) and after.

Decontamination (`contamination`): each item is checked against the training data of the model under test (base:
the pretraining text; sft: + SFT conversations; rlhf: + RL prompts; reward: + SFT conversations + preference
pairs). Contaminated items stay in `items.parquet`, flagged with the reason, and are left out of every score.
"""

from __future__ import annotations

import itertools
import math
from collections import defaultdict
from typing import ClassVar

import torch
from pydantic import Field, model_validator

from llm_core.chat.engine import SamplingParams
from llm_core.chat.loaders import load_prompts
from llm_core.chat.splits import evenly_spaced
from llm_core.chat.tool_conversations import read_facts
from llm_core.config import ConfigError, StageConfig, StrictModel
from llm_core.evals.chat_suites import (
    encode_prompt,
    gsm8k_items,
    identity_items,
    known_items,
    made_up_items,
    read_eval_file,
    run_chat_suites,
    sum_items,
)
from llm_core.evals.contamination import ContaminationIndex
from llm_core.evals.lm_suites import (
    MCItem,
    bits_per_byte,
    heldout_mc_items,
    run_mc_suites,
    standard_items,
)
from llm_core.evals.pretraining_text import pretraining_pieces
from llm_core.evals.results import ItemOutcome, ResultRow, rate_row
from llm_core.evals.tool_suites import run_tool_suites, tool_items
from llm_core.model import GPT
from llm_core.preference.reward_model import ScalarHeadModel, answer_ids
from llm_core.preference.reward_model import score as reward_scores
from llm_core.preference.reward_stage import longer_answer_wins
from llm_core.schemas import EVAL_ITEMS, EVAL_RESULTS
from llm_core.stage import Input, Stage, StageContext, StageResult
from llm_core.store import ParquetShardWriter
from llm_core.tokenizer import load_tokenizer
from llm_core.tokenizer.base import Tokenizer
from llm_core.tokenizer.sources import UPSTREAM_DOCUMENTS
from llm_core.tools.base import Tool
from llm_core.tools.python_tool import PythonTool, SandboxLimits
from llm_core.tools.search_tool import SearchIndex, SearchTool
from llm_core.train.model_files import load_gpt, load_model

GPT_MODELS = {"base": "pretrain", "sft": "sft", "rlhf": "rlhf"}
TOOL_MODELS = ("sft", "rlhf")  # the models whose training taught the tools
RESULTS, ITEMS = "results.parquet", "items.parquet"


class StandardTask(StrictModel):
    """A published multiple-choice set in its own format, from a local file or (with internet) the hub."""

    kind: str = Field(pattern=r"^(hellaswag|arc|piqa|lambada)$")
    path: str = Field(description="local .jsonl/.json/.parquet file or a hub dataset name")
    limit: int = Field(200, ge=1)


class EvalConfig(StageConfig):
    identity_file: str = "data/eval/identity.jsonl"
    made_up_file: str = "data/eval/idk.jsonl"
    assistant_name: str | None = Field(None, description="expected in identity replies; None = sft_data's identity")
    known_questions: int = Field(80, ge=1, description="SFT training questions asked for the over-refusal rate")
    gsm8k_problems: int = Field(40, ge=0, description="GSM8K problems of the SFT data's held-back split")
    sums_max_operand: int = Field(9, ge=1, le=99)
    max_tokens: int = Field(48, ge=1, description="reply length bound")
    temperature: float = Field(0.0, ge=0, description="0 = greedy")
    samples: int = Field(1, ge=1, description="replies per item (needs temperature > 0 when above 1)")
    ngram: int = Field(13, ge=4, description="n of the n-gram decontamination")
    bpb_tokens: int = Field(16384, ge=256, description="held-out tokens scored per text group")
    mc_items: int = Field(100, ge=0, description="cloze and next-sentence items each, from held-out text")
    mc_shots: int = Field(1, ge=0)
    standard_tasks: list[StandardTask] = Field(default_factory=list)
    tool_items: int = Field(40, ge=0, description="held-out items per tool suite (0: no tool suites)")
    facts_file: str = Field("data/tools/facts.jsonl", description="made-up facts the index holds: the search suite")
    tool_max_tokens: int = Field(96, ge=1, description="reply length bound with tools (calls and outputs count)")
    tool_max_calls: int = Field(2, ge=1, description="tool calls per reply")
    tool_output_tokens: int = Field(64, ge=1, description="a tool output is cut to this many tokens")
    python: SandboxLimits = Field(default_factory=SandboxLimits, description="limits of the Python tool")

    @model_validator(mode="after")
    def _check(self) -> EvalConfig:
        if self.samples > 1 and self.temperature == 0:
            raise ValueError("samples > 1 needs temperature > 0 (greedy replies would all be the same)")
        read_eval_file(self.identity_file, ("id", "prompt"))
        read_eval_file(self.made_up_file, ("id", "prompt", "entity"))
        if self.tool_items:
            read_facts(self.facts_file)
        return self


class EvalStage(Stage):
    name = "eval"
    config_model = EvalConfig
    version = "3"  # 3: reward accuracy on the pairs the reward model reads whole (`reward/.../uncut`)
    uses_seed = True
    model_stages: ClassVar[dict[str, str]] = {**GPT_MODELS, "reward": "reward"}

    def input_stages(self, config: EvalConfig) -> dict[str, str | Input]:
        """Every model (and the SFT data) whose stage is enabled; the reward model's data only beside it; the search
        index for the tool suites, when its stage is enabled."""
        models = {**self.model_stages, "sft_data": "sft_data"}
        inputs: dict[str, str | Input] = {
            "tokenizer": "bpe", "tokens": "tokenize", "documents": UPSTREAM_DOCUMENTS,
            **{name: Input((stage,), optional=True) for name, stage in models.items()},
            "reward_data": Input(("reward_data",), only_with="reward")}
        if config.tool_items:
            inputs["index"] = Input(("index",), optional=True)
        return inputs

    def data_paths(self, ctx_config: EvalConfig) -> list[str]:
        paths = [ctx_config.identity_file, ctx_config.made_up_file]
        paths += [ctx_config.facts_file] if ctx_config.tool_items else []
        return paths + [t.path for t in ctx_config.standard_tasks]

    def run(self, ctx: StageContext) -> StageResult:
        cfg: EvalConfig = ctx.config
        for name, ref in ctx.inputs.items():
            wanted = self.model_stages.get(name)
            if wanted and ref.stage != wanted:
                raise ConfigError(f"eval input {name!r} must be a {wanted!r} model artifact, got {ref}")
        tokenizer = load_tokenizer(ctx.reader("tokenizer"))
        run = EvalRun(ctx, cfg, tokenizer)
        return run.finish()


class EvalRun:
    """One evaluation: items built once, every model scored on them, results written."""

    def __init__(self, ctx: StageContext, cfg: EvalConfig, tokenizer: Tokenizer):
        self.ctx, self.cfg, self.tokenizer = ctx, cfg, tokenizer
        self.rows: list[ResultRow] = []
        self.outcomes: list[ItemOutcome] = []
        self.seed = ctx.run.seed
        train: list[list[dict]] = []
        val: list[dict] = []
        name = cfg.assistant_name or ""
        if "sft_data" in ctx.inputs:
            sft_data = ctx.reader("sft_data")
            name = name or sft_data.manifest.config.get("identity", {}).get("name", "")
            train = [r["messages"] for r in sft_data.iter_rows("train/*.parquet", ["messages"])]
            val = list(sft_data.iter_rows("val/*.parquet", ["messages", "source"]))
        without_calls = [c for c in train if not any(m.get("parts") for m in c)]  # tool questions: the tool suites
        single_turn = [_thawed(m) for m in dict.fromkeys(map(_frozen, without_calls)) if len(m) == 2]
        self.chat_items = (
            (identity_items(cfg.identity_file, name) if name else [])
            + made_up_items(cfg.made_up_file)
            + evenly_spaced(known_items(single_turn), cfg.known_questions)
            + sum_items(cfg.sums_max_operand)
            + gsm8k_items(evenly_spaced([r["messages"] for r in val if r["source"] == "gsm8k"], cfg.gsm8k_problems))
        )
        self.check_vocabulary()
        self.heldout: dict[str, list[str]] = defaultdict(list)
        pretrain_index = ContaminationIndex(cfg.ngram)
        documents = ctx.reader("documents") if "documents" in ctx.inputs else None
        for piece in pretraining_pieces(ctx.reader("tokens"), documents):
            if piece.heldout:
                self.heldout[piece.group].append(piece.text)
            else:
                pretrain_index.add_texts([piece.text])
        sft_index = ContaminationIndex(cfg.ngram).add_texts(
            t for c in train for m in c for t in message_texts(m)).add_prompts(c[0]["content"] for c in train)
        self.indexes = {"base": pretrain_index, "sft": ContaminationIndex.union([pretrain_index, sft_index], cfg.ngram)}
        if "rlhf" in ctx.inputs:
            self.indexes["rlhf"] = ContaminationIndex.union([self.indexes["sft"], self.rl_prompt_index()], cfg.ngram)
        self.tool_items = tool_items(cfg.tool_items, cfg.facts_file if "index" in ctx.inputs else None)
        self.search: list[Tool] = []
        if "index" in ctx.inputs and self.tool_items:
            self.search.append(SearchTool(SearchIndex.load(ctx.reader("index"))))
        english = [t for g, texts in sorted(self.heldout.items()) if g.endswith("_en") for t in texts]
        self.mc_items: list[MCItem] = heldout_mc_items(english, cfg.mc_items, self.seed)
        for task in cfg.standard_tasks:
            self.mc_items += standard_items(task.kind, task.path, task.limit, self.seed)

    def check_vocabulary(self) -> None:
        """An eval set none of whose items the tokenizer can encode is a config error, not a score of 0."""
        by_file = {"identity": self.cfg.identity_file, "identity_other": self.cfg.identity_file,
                   "idk_made_up": self.cfg.made_up_file}
        for suite, path in by_file.items():
            items = [i for i in self.chat_items if i.suite == suite]
            if items and all(encode_prompt(self.tokenizer, i.prompt) is None for i in items):
                raise ConfigError(f"eval file {path}: no item of suite {suite!r} can be encoded by the tokenizer")

    def rl_prompt_index(self) -> ContaminationIndex:
        index = ContaminationIndex(self.cfg.ngram)
        path = self.ctx.reader("rlhf").manifest.config.get("prompts_path")
        if path:
            try:
                prompts = list(load_prompts(path))
            except FileNotFoundError:
                self.ctx.log.warning("RL prompts %s not found here: the policy's decontamination leaves them out", path)
                prompts = []
            index.add_texts(prompts).add_prompts(prompts)
        return index

    # -- GPT models ------------------------------------------------------------------------------------------------
    def evaluate_gpt(self, model_name: str, model: GPT) -> None:
        index = self.indexes[model_name]
        for group, texts in sorted(self.heldout.items()):
            bpb, n = bits_per_byte(model, self.tokenizer, texts, self.cfg.bpb_tokens)
            if n:
                self.rows.append(ResultRow(model_name, f"bpb/{group}", "bpb", bpb, n, higher_is_better=False))
        self.evaluate_mc(model_name, model, index)
        self.evaluate_chat(model_name, model, index)
        if model_name in TOOL_MODELS and self.tool_items and self.tokenizer.has_tools:
            self.evaluate_tools(model_name, model, index)

    def evaluate_mc(self, model_name: str, model: GPT, index: ContaminationIndex) -> None:
        rows, outcomes = run_mc_suites(model_name, model, self.tokenizer, self.mc_items, self.cfg.mc_shots, index)
        self.rows += rows
        self.outcomes += outcomes

    def evaluate_chat(self, model_name: str, model: GPT, index: ContaminationIndex) -> None:
        cfg = self.cfg
        params = SamplingParams(max_tokens=cfg.max_tokens, temperature=cfg.temperature)
        rows, outcomes = run_chat_suites(model_name, model, self.tokenizer, self.chat_items, params, cfg.samples,
                                         index, self.seed, cfg.sums_max_operand)
        self.rows += rows
        self.outcomes += outcomes

    def evaluate_tools(self, model_name: str, model: GPT, index: ContaminationIndex) -> None:
        cfg = self.cfg
        params = SamplingParams(max_tokens=cfg.tool_max_tokens, temperature=cfg.temperature)
        with PythonTool(cfg.python) as python:
            rows, outcomes = run_tool_suites(model_name, model, self.tokenizer, self.tool_items, params,
                                             [python, *self.search], index, max_calls=cfg.tool_max_calls,
                                             max_output_tokens=cfg.tool_output_tokens, seed=self.seed)
        self.rows += rows
        self.outcomes += outcomes

    # -- reward model and RL ---------------------------------------------------------------------------------------
    def evaluate_reward(self) -> None:
        model = load_model(ScalarHeadModel, self.ctx.reader("reward")).eval()
        data = self.ctx.reader("reward_data")
        pairs = list(data.iter_rows("val/*.parquet"))
        train = list(data.iter_rows("train/*.parquet"))
        # a held-back pair is contaminated when the same comparison, or a long stretch of one of its answers, is in
        # the reward training pairs (a prompt alone may recur: a generated preference asks the same few questions)
        index = ContaminationIndex(self.cfg.ngram).add_texts(
            f"{p['chosen']}\n{p['rejected']}" for p in train).add_prompts(map(comparison_text, train))
        block, tok = model.gpt.config.block_size, self.tokenizer
        full = [(answer_ids(tok, p["prompt"], p["chosen"]), answer_ids(tok, p["prompt"], p["rejected"])) for p in pairs]
        chosen = reward_scores(model, [c[-block:] for c, _ in full], tok.eot_id)
        rejected = reward_scores(model, [r[-block:] for _, r in full], tok.eot_id)
        groups: dict[str, list[tuple[ItemOutcome, float, float, bool]]] = defaultdict(list)
        for i, (p, c, r, (c_ids, r_ids)) in enumerate(zip(pairs, chosen.tolist(), rejected.tolist(), full)):
            why = index.reason(comparison_text(p))
            outcome = ItemOutcome("reward", f"reward/{p['source']}", f"pair-{i:05d}", p["prompt"][-1]["content"],
                                  f"chosen {c:.3f} vs rejected {r:.3f}", p["chosen"][:200], c > r, why or "",
                                  why is not None)
            longer = longer_answer_wins(p)
            for group in ("all", p["source"]):
                groups[group].append((outcome, longer, 1.0 - longer, max(len(c_ids), len(r_ids)) > block))
            self.outcomes.append(outcome)
        for group, entries in sorted(groups.items()):
            suite = f"reward/{group}"
            self.reward_rows(suite, entries)
            self.rows.append(ResultRow("reward", suite, "truncated_share", sum(e[3] for e in entries) / len(entries),
                                       len(entries), higher_is_better=False))
            self.reward_rows(f"{suite}/uncut", [e for e in entries if not e[3]])  # the comparisons read whole

    def reward_rows(self, suite: str, entries: list[tuple[ItemOutcome, float, float, bool]]) -> None:
        """Accuracy beside "longer wins" and "shorter wins"."""
        if not entries:
            return
        outcomes = [e[0] for e in entries]
        clean = [e for e in entries if not e[0].contaminated]
        longer = sum(e[1] for e in clean) / max(len(clean), 1)
        shorter = sum(e[2] for e in clean) / max(len(clean), 1)
        self.rows.append(rate_row("reward", suite, "accuracy", outcomes, baseline=longer, baseline_name="longer wins"))
        self.rows.append(ResultRow("reward", suite, "baseline:longer_wins", longer, len(clean)))
        self.rows.append(ResultRow("reward", suite, "baseline:shorter_wins", shorter, len(clean)))

    def evaluate_rl(self) -> None:
        m = self.ctx.reader("rlhf").manifest
        n = int(m.metrics.get("eval_prompts", m.counts.get("eval_prompts", 0)))
        algorithm = m.config.get("algorithm", "ppo")
        target = "pass@1" if algorithm == "grpo" else "reward"
        kinds = [""] + sorted({"/" + k.split("/", 1)[1] for k in m.metrics if k.startswith("before_reward/")})
        for kind, (model_name, when) in itertools.product(kinds, (("sft", "before"), ("rlhf", "after"))):
            for key, metric, better in (("reward", target, True), ("score", "reward_model_score", True),
                                        ("finished", "im_end", True),
                                        ("length", "length", None), ("kl", "kl", False)):
                value = m.metrics.get(f"{when}_{key}{kind}")
                if value is not None and not (key == "kl" and when == "before"):
                    self.rows.append(ResultRow(model_name, f"rl/{algorithm}_heldout{kind}", metric, float(value),
                                               int(m.metrics.get(f"eval_prompts{kind}", n)), higher_is_better=better))

    # -- output ------------------------------------------------------------------------------------------------
    def finish(self) -> StageResult:
        models = [name for name in GPT_MODELS if name in self.ctx.inputs]
        for i, name in enumerate(models):
            model = load_gpt(self.ctx.reader(name)).eval()
            with torch.no_grad():
                self.evaluate_gpt(name, model)
            self.ctx.progress(i + 1, len(models) + 1)
        if "reward" in self.ctx.inputs:
            self.evaluate_reward()
        if "rlhf" in self.ctx.inputs:
            self.evaluate_rl()
        writer = self.ctx.writer()
        with ParquetShardWriter(writer, RESULTS, EVAL_RESULTS) as out:
            for row in self.rows:
                out.write(row.row())
        with ParquetShardWriter(writer, ITEMS, EVAL_ITEMS) as out:
            for o in self.outcomes:
                out.write(o.row())
        self.ctx.progress(len(models) + 1, len(models) + 1)
        metrics = {r.metric_key: r.value for r in self.rows if not math.isnan(r.value)}
        counts = {"items": len(self.outcomes), "contaminated": sum(o.contaminated for o in self.outcomes),
                  "results": len(self.rows)}
        return StageResult(counts=counts, metrics=metrics, markdown=results_markdown(self.rows),
                           tables={"results": [r.row() for r in self.rows]})


def results_markdown(rows: list[ResultRow]) -> str:
    models = list(dict.fromkeys(r.model for r in rows))
    lines = ["### Evaluation", "", "| suite | metric | " + " | ".join(models) + " | baseline |",
             "|---|---|" + "---|" * len(models) + "---|"]
    cells: dict[tuple[str, str], dict[str, ResultRow]] = defaultdict(dict)
    for r in rows:
        cells[(r.suite, r.metric)][r.model] = r
    for (suite, metric), by_model in cells.items():
        values = [f"{by_model[m].value:.3f} (n={by_model[m].n})" if m in by_model else "" for m in models]
        base = next((r for r in by_model.values() if r.baseline is not None), None)
        baseline = f"{base.baseline:.3f} ({base.baseline_name})" if base else ""
        lines.append(f"| {suite} | {metric} | " + " | ".join(values) + f" | {baseline} |")
    return "\n".join(lines) + "\n"


def comparison_text(pair: dict) -> str:
    return "\n".join([pair["prompt"][-1]["content"], pair["chosen"], pair["rejected"]])


def message_texts(message: dict) -> list[str]:
    """The texts of a message a model trained on: its content and, for a tool-using reply, its calls and outputs."""
    return [message["content"], *(p["text"] for p in message.get("parts") or () if p["kind"] != "text")]


def _frozen(messages: list[dict]) -> tuple[tuple[str, str], ...]:
    return tuple((m["role"], m["content"]) for m in messages)


def _thawed(messages: tuple[tuple[str, str], ...]) -> list[dict]:
    return [{"role": r, "content": c} for r, c in messages]
