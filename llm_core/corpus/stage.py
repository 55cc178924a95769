"""The `corpus` stage: add this night's snapshot to the named corpus.

The artifact is small: `corpus.json` lists, by reference, every snapshot's filtered documents (`filter`
artifact, which also holds that snapshot's dedup index segment) and token shards (`tokenize` artifact), with
per-snapshot counts, and names the one tokenizer of the corpus. Nothing is copied: the new corpus artifact is the
previous one's list plus this night's entry, so a refresh costs what is new. The previous corpus is an input
resolved while planning (`state.py`); a refresh killed before this stage commits leaves the corpus as it was.

A snapshot label appears once in a corpus: adding a label the previous corpus already holds is an error (a rerun
of that night is planned against the corpus before it, see `state.py`).
"""

from __future__ import annotations

import contextlib
from typing import Any

from pydantic import Field

from llm_core.config import RunConfig, StageConfig
from llm_core.corpus.lock import refresh_lock
from llm_core.corpus.state import corpus_name
from llm_core.stage import Input, Stage, StageContext, StageResult

CORPUS_FILE = "corpus.json"


class CorpusConfig(StageConfig):
    name: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$",
                             description="the corpus a refresh grows (None: run.name)")


class CorpusStage(Stage):
    name = "corpus"
    config_model = CorpusConfig
    version = "1"
    ends_data_refresh = True

    def run_lock(self, config: Any) -> contextlib.AbstractContextManager[None]:
        """A refresh holds its corpus's lock from planning (which reads the corpus's state) to its last stage, so
        two refreshes of one corpus never interleave."""
        return refresh_lock(config.run.store(), corpus_name(config))

    def input_stages(self, config: CorpusConfig) -> dict[str, str | Input]:
        return {"crawl": "crawl", "documents": Input(("filter", "extract")), "tokens": "tokenize",
                "tokenizer": "bpe"}

    def key_config(self, ctx_config: CorpusConfig, run: RunConfig) -> dict[str, Any]:
        return {**super().key_config(ctx_config, run), "name": ctx_config.name or run.name}

    def run(self, ctx: StageContext) -> StageResult:
        store = ctx.store()
        name = ctx.config.name or ctx.run.name
        previous = ctx.reader("previous").read_json(CORPUS_FILE) if "previous" in ctx.inputs else None
        snapshot = ctx.reader("crawl").manifest.config["snapshot"]
        tokens = ctx.reader("tokens").manifest
        tokenizer = str(ctx.inputs["tokenizer"])
        if previous is not None:
            if previous["tokenizer"] != tokenizer:
                raise ValueError(f"corpus {name!r} is tokenized by {previous['tokenizer']}, this night by "
                                 f"{tokenizer}: a new tokenizer starts a new corpus (another corpus.name)")
            if snapshot in [s["snapshot"] for s in previous["snapshots"]]:
                raise ValueError(f"corpus {name!r} already holds snapshot {snapshot!r}")
        documents = store.manifest(ctx.inputs["documents"]).counts
        entry = {
            "snapshot": snapshot,
            "crawl": str(ctx.inputs["crawl"]),
            "documents": str(ctx.inputs["documents"]),
            "tokens": str(ctx.inputs["tokens"]),
            "input_documents": documents.get("input", 0),
            "kept_documents": documents.get("kept", 0),
            "cross_snapshot_duplicates": sum(n for k, n in documents.items()
                                             if k.startswith("rejected:dedup:cross_snapshot")),
            "train_tokens": tokens.counts.get("train_tokens", 0),
            "val_tokens": tokens.counts.get("val_tokens", 0),
        }
        snapshots = [*(previous["snapshots"] if previous else []), entry]
        listing = {"name": name, "tokenizer": tokenizer, "snapshots": snapshots}
        ctx.writer().write_json(CORPUS_FILE, listing)
        total = {k: sum(s[k] for s in snapshots) for k in ("kept_documents", "train_tokens", "val_tokens")}
        new = "nothing new: an empty snapshot" if not entry["kept_documents"] else \
            f"{entry['kept_documents']:,} new documents"
        return StageResult(
            counts={"snapshots": len(snapshots), "documents": total["kept_documents"],
                    "tokens": total["train_tokens"] + total["val_tokens"], "new_documents": entry["kept_documents"],
                    "new_tokens": entry["train_tokens"] + entry["val_tokens"]},
            tables={"snapshots": snapshots},
            markdown=corpus_markdown(listing, new),
            extra={"snapshot": snapshot, "tokenizer": tokenizer, "snapshots": [s["snapshot"] for s in snapshots]},
        )


def corpus_markdown(listing: dict[str, Any], new: str) -> str:
    rows = listing["snapshots"]
    lines = [f"### Corpus `{listing['name']}`: {len(rows)} snapshots ({new} tonight), tokenizer "
             f"`{listing['tokenizer']}`", "",
             "| snapshot | documents in | kept | cross-snapshot duplicates | train tokens | val tokens |",
             "|---|---:|---:|---:|---:|---:|"]
    lines += [f"| {s['snapshot']} | {s['input_documents']:,} | {s['kept_documents']:,} | "
              f"{s['cross_snapshot_duplicates']:,} | {s['train_tokens']:,} | {s['val_tokens']:,} |" for s in rows]
    lines.append(f"| **total** | {sum(s['input_documents'] for s in rows):,} | "
                 f"{sum(s['kept_documents'] for s in rows):,} | "
                 f"{sum(s['cross_snapshot_duplicates'] for s in rows):,} | {sum(s['train_tokens'] for s in rows):,} "
                 f"| {sum(s['val_tokens'] for s in rows):,} |")
    return "\n".join(lines)
