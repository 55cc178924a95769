"""The champion of a corpus: the model people use, as a pointer kept beside the artifacts.

The pointer is an append-only log of decisions under `{root}/_corpus/{name}/decisions/`, one small JSON file per
decision (`NNNNNN-{source}.json`), written atomically. A decision records the challenger's model keys, whether it
was promoted, the side-by-side table and the reasons; the champion is the challenger of the newest decision that
promoted one. Refused challengers stay in the store and in the log.

`champion_at(store, corpus, snapshot)` is the champion as it stood when the night of `snapshot` started (the log up
to that night's first decision), so that replanning a night that already ran finds the same champion and its
artifacts are cache hits.

This module knows nothing of Prefect; the artifacts it names are ordinary store artifacts.
"""

from __future__ import annotations

import datetime as dt
import json
import posixpath
import re
from typing import Any

from llm_core.manifest import parse_ref
from llm_core.store import ArtifactStore

CORPUS_DIR = "_corpus"
DECISIONS = "decisions"
CHAT_STAGES = ("rlhf", "sft", "pretrain")  # the chat model of a decision: the last of its training stages
_NAME_RE = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


def check_corpus_name(name: str) -> str:
    """The name, or ValueError: a corpus name is one plain token (it names a folder of the store)."""
    if not _NAME_RE.match(name):
        raise ValueError(f"corpus name {name!r} must be letters, digits, _ and - only (at most 64)")
    return name


def corpus_folder(store: ArtifactStore, corpus: str) -> str:
    return posixpath.join(store._path_root, CORPUS_DIR, check_corpus_name(corpus))


def decisions(store: ArtifactStore, corpus: str) -> list[dict[str, Any]]:
    """Every decision about the corpus's champion, oldest first."""
    folder = posixpath.join(corpus_folder(store, corpus), DECISIONS)
    if not store.fs.exists(folder):
        return []
    out = []
    for path in sorted(store.fs.glob(posixpath.join(folder, "*.json"))):
        with store.fs.open(path, "rb") as f:
            out.append(json.loads(f.read()))
    return out


def record_decision(store: ArtifactStore, corpus: str, decision: dict[str, Any], source: str) -> dict[str, Any]:
    """Append a decision (once per `source`, e.g. the promote artifact's key: a retried step finds its own record
    and returns it); returns the record as stored."""
    existing = [d for d in decisions(store, corpus) if d.get("source") == source]
    if existing:
        return existing[-1]
    folder = posixpath.join(corpus_folder(store, corpus), DECISIONS)
    store.fs.makedirs(folder, exist_ok=True)
    seq = len(store.fs.glob(posixpath.join(folder, "*.json")))
    record = {**decision, "corpus": corpus, "source": source, "seq": seq,
              "decided_at": dt.datetime.now(dt.timezone.utc).isoformat()}
    name = posixpath.join(folder, f"{seq:06d}-{source.replace('/', '-')}.json")
    tmp = posixpath.join(folder, f".tmp-{seq:06d}.json")
    with store.fs.open(tmp, "wb") as f:
        f.write(json.dumps(record, indent=2, default=str).encode())
    store.fs.mv(tmp, name)
    return record


def champion(store: ArtifactStore, corpus: str) -> dict[str, Any] | None:
    """The newest decision that promoted a model, or None (no champion yet)."""
    promoted = [d for d in decisions(store, corpus) if d.get("promoted")]
    return promoted[-1] if promoted else None


def champion_at(store: ArtifactStore, corpus: str, snapshot: str) -> dict[str, Any] | None:
    """The champion when the night of `snapshot` started: decisions before the first one about that snapshot."""
    earlier = []
    for d in decisions(store, corpus):
        if d.get("snapshot") == snapshot:
            break
        earlier.append(d)
    promoted = [d for d in earlier if d.get("promoted")]
    return promoted[-1] if promoted else None


def chat_model(decision: dict[str, Any]) -> str | None:
    """'stage/key' of a decision's chat model: its RL policy, else its SFT model, else its base model."""
    models = decision.get("models", {})
    return next((models[s] for s in CHAT_STAGES if models.get(s)), None)


def champion_key(store: ArtifactStore, corpus: str) -> str | None:
    """'stage/key' of the corpus's champion chat model (what `llmpipe chat --model champion` talks to), or None."""
    current = champion(store, corpus)
    return chat_model(current) if current is not None else None


def promote_by_hand(store: ArtifactStore, corpus: str, key: str, reason: str) -> dict[str, Any]:
    """Make the model artifact `key` (a pretrain, sft or rlhf artifact) the champion, recording who decided and why;
    its upstream models (the base of an SFT model, ...) are found in its lineage."""
    ref = store.find(key)
    if ref.stage not in CHAT_STAGES:
        raise ValueError(f"{ref} is not a model of the stages {list(CHAT_STAGES)}")
    models = {m.stage: f"{m.stage}/{m.key}" for _, m in store.lineage(ref) if m.stage in CHAT_STAGES}
    models = {s: models.get(s) for s in CHAT_STAGES}
    decision = {"snapshot": None, "promoted": True, "models": models, "by": "person",
                "reasons": [reason or "promoted by hand"], "table": []}
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    return record_decision(store, corpus, decision, f"hand-{parse_ref(str(ref))[1]}-{stamp}")
