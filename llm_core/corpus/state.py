"""What a night carries over from the nights before, resolved while planning: the corpus it adds a snapshot to,
the tokenizer pinned for the corpus, and the champion model it continues from and is compared with.

All three enter the plan as artifact keys (inputs of the stages that read them), so an artifact's key stays a
function of (config, input keys, code version): replanning a night that already ran finds the same state and its
artifacts are cache hits, and a night killed half-way changed nothing (the corpus only grows when its artifact
commits; the champion only moves when `promote` records a decision).

- Previous corpus: the corpus artifact this night's snapshot was already added to names it (a rerun); otherwise
  the newest corpus artifact of the corpus (the head), among those built with the pinned tokenizer.
- Tokenizer (`bpe.reuse`): `latest` = the previous corpus's tokenizer (none on the first night: `bpe` trains one);
  a KEY = that `bpe` artifact (a corpus built with another tokenizer is not continued: a new lineage starts);
  `never` = train a new one, which starts a new lineage (no previous corpus).
- Champion: see `champion.champion_at`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llm_core.config import ConfigError
from llm_core.corpus.champion import champion_at, check_corpus_name
from llm_core.manifest import Manifest, parse_ref
from llm_core.store import ArtifactRef, ArtifactStore

CORPUS_STAGE = "corpus"


@dataclass(frozen=True)
class CorpusState:
    name: str
    snapshot: str
    previous: Manifest | None
    tokenizer: ArtifactRef | None
    champion: dict[str, Any] | None

    @property
    def is_refresh(self) -> bool:
        """A later night of a corpus (it continues an earlier one)."""
        return self.previous is not None


def corpus_name(config: Any) -> str:
    """`corpus.name`, else `run.name`."""
    return check_corpus_name(config.corpus.name or config.run.name)


def resolve_state(config: Any, store: ArtifactStore) -> CorpusState:
    """The state this night of `config` (a PipelineConfig) carries over, read from `store`."""
    name, snapshot, reuse = corpus_name(config), config.crawl.snapshot, config.bpe.reuse
    pinned = _pinned_tokenizer(store, reuse)
    corpora = [m for m in store.list(CORPUS_STAGE) if m.config.get("name") == name]
    previous = None
    if reuse != "never":
        rerun = [m for m in corpora if m.extra.get("snapshot") == snapshot]
        if rerun:
            before = rerun[-1].inputs.get("previous")
            previous = store.manifest(store.ref(*parse_ref(before))) if before else None
        else:
            same_tokenizer = [m for m in corpora if pinned is None or m.extra.get("tokenizer") == str(pinned)]
            previous = same_tokenizer[-1] if same_tokenizer else None
    tokenizer = pinned
    if tokenizer is None and previous is not None:
        tokenizer = store.ref(*parse_ref(previous.extra["tokenizer"]))
    if tokenizer is not None:
        check_special_tokens(store.manifest(tokenizer), config.bpe.special_tokens)
    champion = champion_at(store, name, snapshot) if previous is not None else None
    return CorpusState(name, snapshot, previous, tokenizer, champion)


def _pinned_tokenizer(store: ArtifactStore, reuse: str) -> ArtifactRef | None:
    if reuse in ("latest", "never"):
        return None
    try:
        ref = store.find(reuse)
    except KeyError as e:
        raise ConfigError(f"bpe.reuse={reuse}: {e.args[0]}") from None
    if ref.stage != "bpe":
        raise ConfigError(f"bpe.reuse={reuse}: {ref} is not a bpe artifact")
    return ref


def check_special_tokens(tokenizer: Manifest, needed: list[str]) -> None:
    """ConfigError when the pinned tokenizer lacks a special token the config asks for."""
    have = set(tokenizer.extra.get("special_ids", {}))
    missing = [t for t in needed if t not in have]
    if missing:
        raise ConfigError(f"pinned tokenizer bpe/{tokenizer.key} lacks the special tokens {missing} that "
                          "bpe.special_tokens needs: set bpe.reuse=never to train a new one (a new corpus lineage)")


def carried_inputs(config: Any, state: CorpusState, stage: str, store: ArtifactStore) -> dict[str, ArtifactRef]:
    """The artifacts stage `stage` reads from earlier nights: the previous corpus (filter: cross-snapshot dedup,
    tokenize: no curated text again, corpus: the list it extends), the champion's base model (pretrain: continued
    pretraining) and the champion's decision models (promote: the comparison)."""
    out: dict[str, ArtifactRef] = {}
    if stage == "filter" and config.filter.dedup.across_snapshots == "none":
        return out
    if state.previous is not None and stage in ("filter", "tokenize", CORPUS_STAGE):
        out["previous"] = store.ref(CORPUS_STAGE, state.previous.key)
    if state.champion is not None and stage in ("pretrain", "promote"):
        for model_stage, ref in sorted(state.champion.get("models", {}).items()):
            if ref and (stage == "promote" or model_stage == "pretrain"):
                out[f"champion_{model_stage}"] = store.ref(*parse_ref(ref))
    return out
