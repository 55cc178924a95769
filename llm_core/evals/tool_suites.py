"""The tool suites: questions a chat model should answer with a tool, asked to the same model with its tools and
without them (tool calls disabled), on items no training conversation holds (`tool_conversations.is_heldout`).

| suite | items | correct when |
|---|---|---|
| `tools/products` | two-digit products (`What is 47 * 29?`) of held-out operand pairs | the answer's final number is the product |
| `tools/letters` | letter counts (`How many "r" are in "strawberry"?`) of held-out words | ... is the count |
| `tools/decimals` | the bigger of two decimals (`9.9` or `9.11`) of held-out pairs | ... is the bigger one (chance 0.5) |
| `tools/search` | questions about held-out made-up facts that only the search index holds | ... is the fact's number |

The answer is the reply's text outside tool calls and outputs. Rows per model and suite: `accuracy` (with tools,
beside the same model without them), `accuracy_without_tools` (beside chance where defined), `call_rate` (replies
that call a tool), `well_formed_rate` (of the replies that call, those whose every call was well formed),
`answer_in_output` (of the replies that call, those a tool output of which holds the expected number: the call was
right, whatever the answer made of it) and, for search, `retrieved_rate` (replies whose search output holds the
document that answers the question); the two rates among calling replies are left out when the model never called.
Items are checked against the model's training data like every chat suite; the answers with and without tools are
both in `items.parquet` (the latter with `/no_tools` after the item id).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial

from llm_core.chat.engine import Completion, Engine, SamplingParams
from llm_core.chat.numbers import final_answer, same_number, states_number
from llm_core.chat.tool_conversations import fact_questions, heldout_python_questions, read_facts
from llm_core.evals.chat_suites import encode_prompt
from llm_core.evals.contamination import ContaminationIndex
from llm_core.evals.data import EvalData
from llm_core.evals.results import ItemOutcome, ResultRow, rate_row
from llm_core.evals.suite import Scored, Suite, SuiteReport
from llm_core.model import GPT
from llm_core.tokenizer.base import Tokenizer
from llm_core.tools.base import Tool, ToolInputs
from llm_core.tools.registry import opened_tools

PYTHON_SUITES = {"tools/products": "product", "tools/letters": "letters", "tools/decimals": "decimals"}
SEARCH_SUITE = "tools/search"
CHANCE = {"tools/decimals": 0.5}
TOOL_MODELS = ("sft", "rlhf")  # the models whose training taught the tools
ITEM_SEED = 1616  # items are the same in every run (they are held out by hash, not by seed)
NO_TOOLS = "/no_tools"


@dataclass(frozen=True)
class ToolItem:
    suite: str
    item_id: str
    prompt: str
    expected: str
    entity: str | None = None  # search: the made-up entity (decontamination by name)
    url: str | None = None  # search: the document that answers it


def tool_items(per_suite: int, facts_path: str | None) -> list[ToolItem]:
    """`per_suite` held-out items of each Python suite and, with a facts file, of the search suite."""
    items = []
    for suite, kind in PYTHON_SUITES.items():
        for i, q in enumerate(heldout_python_questions(kind, per_suite, ITEM_SEED)):
            items.append(ToolItem(suite, f"{kind}-{i:03d}", q.question, q.answer))
    if facts_path:
        for i, fq in enumerate(fact_questions(read_facts(facts_path), heldout=True)[:per_suite]):
            items.append(ToolItem(SEARCH_SUITE, f"fact-{i:03d}", fq.question.question, fq.question.answer,
                                  fq.entity, fq.url))
    return items


def score(item: ToolItem, completion: Completion) -> tuple[bool, str]:
    got = final_answer(completion.answer)
    if got is None:
        return False, "no number in the answer"
    ok = same_number(got, item.expected)
    return ok, "" if ok else f"final number {got}"


def item_outcome(model_name: str, item: ToolItem, contaminated_why: str | None, item_id: str, completion: Completion,
                 ok: bool, reason: str = "") -> ItemOutcome:
    return ItemOutcome(model_name, item.suite, item_id, item.prompt, completion.text, item.expected, ok,
                       contaminated_why or reason, contaminated_why is not None)


def run_tool_suites(
    model_name: str, model: GPT, tokenizer: Tokenizer, items: Sequence[ToolItem], params: SamplingParams,
    tools: Sequence[Tool], index: ContaminationIndex, *, max_calls: int, max_output_tokens: int, seed: int,
) -> tuple[list[ResultRow], list[ItemOutcome]]:
    """Every item answered greedily (or as `params` say) with `tools` and with none; results rows and outcomes."""
    asked = [(item, ids) for item in items if (ids := encode_prompt(tokenizer, item.prompt)) is not None]
    prompts = [ids for _, ids in asked]
    with_tools = Engine(model, tokenizer, tools=tuple(tools), max_calls=max_calls,
                        max_output_tokens=max_output_tokens).generate(prompts, params, seed=seed)
    without = Engine(model, tokenizer).generate(prompts, params, seed=seed)
    by_suite: dict[str, dict[str, list[ItemOutcome]]] = defaultdict(lambda: defaultdict(list))
    for (item, _), [c], [plain] in zip(asked, with_tools, without):
        outcome = partial(item_outcome, model_name, item, index.reason(item.prompt, "", item.entity))

        metrics = by_suite[item.suite]
        metrics["accuracy"].append(outcome(item.item_id, c, *score(item, c)))
        metrics["accuracy_without_tools"].append(outcome(item.item_id + NO_TOOLS, plain, *score(item, plain)))
        metrics["call_rate"].append(outcome(item.item_id, c, bool(c.calls), "" if c.calls else "no tool call"))
        if c.calls:
            malformed = [call.call for call in c.calls if not call.well_formed]
            metrics["well_formed_rate"].append(outcome(item.item_id, c, not malformed,
                                                       f"malformed call {malformed[0]!r}" if malformed else ""))
        if c.calls:
            given = any(states_number(call.output, item.expected) for call in c.calls)
            metrics["answer_in_output"].append(outcome(item.item_id, c, given,
                                                       "" if given else "no tool output holds the answer"))
        if item.url:
            found = any(call.tool == "search" and item.url in call.output for call in c.calls)
            metrics["retrieved_rate"].append(outcome(item.item_id, c, found,
                                                     "" if found else "the answering document was not retrieved"))
    rows: list[ResultRow] = []
    for suite, metrics in by_suite.items():
        without_row = rate_row(model_name, suite, "accuracy_without_tools", metrics["accuracy_without_tools"],
                               baseline=CHANCE.get(suite), baseline_name="chance" if suite in CHANCE else None)
        rows.append(rate_row(model_name, suite, "accuracy", metrics["accuracy"], baseline=without_row.value,
                             baseline_name="without tools"))
        rows.append(without_row)
        extra = ("retrieved_rate",) if suite == SEARCH_SUITE else ()
        for metric in ("call_rate", "well_formed_rate", "answer_in_output", *extra):
            if metrics[metric] or metric == "call_rate":  # the rates among calls exist only when it called
                rows.append(rate_row(model_name, suite, metric, metrics[metric]))
    outcomes = [o for metrics in by_suite.values()
                for o in metrics["accuracy"] + metrics["accuracy_without_tools"]]
    return rows, outcomes


class ToolSuites(Suite[list[ToolItem]]):
    """`tools/...` of the chat models, when the tokenizer has the tool tokens, with every tool of the registry that
    opens here (search needs the `index` input)."""

    models = TOOL_MODELS
    report = SuiteReport(rows=("tools/",), table="tools", headline="accuracy", columns={
        "accuracy": "with tools", "accuracy_without_tools": "without tools", "call_rate": "calls a tool",
        "well_formed_rate": "well-formed calls", "answer_in_output": "tool output holds the answer",
        "retrieved_rate": "right document found"})

    def items(self, data: EvalData) -> list[ToolItem]:
        return tool_items(data.config.tool_items, data.config.facts_file if data.has("index") else None)

    def score(self, model_name: str, model: GPT, items: list[ToolItem], data: EvalData) -> Scored:
        cfg = data.config
        if not items or not data.tokenizer.has_tools:
            return [], []
        params = SamplingParams(max_tokens=cfg.tool_max_tokens, temperature=cfg.temperature)
        inputs = ToolInputs(index=data.reader("index") if data.has("index") else None, limits={"python": cfg.python})
        with opened_tools(inputs) as tools:
            return run_tool_suites(model_name, model, data.tokenizer, items, params, tools, data.indexes[model_name],
                                   max_calls=cfg.tool_max_calls, max_output_tokens=cfg.tool_output_tokens,
                                   seed=data.seed)
