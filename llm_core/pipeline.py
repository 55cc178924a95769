"""Plan a run: which stages, in what order, with which artifact keys, before any work starts.

Keys depend only on configs and upstream keys, so the whole DAG's keys are known up front: a finished stage is a
cache hit, and `llmpipe stage NAME` knows exactly which upstream artifacts it needs. A stage names its inputs from its
own config alone (`Stage.input_stages`); which stage each one is read from in this run (`input_sources`) depends on
the stages the config enables, and is decided here. What a night carries over from earlier nights of its corpus
(the previous corpus, the pinned tokenizer, the champion: `llm_core/corpus/state.py`) enters as input keys too, so a
replanned night finds the same keys.

`preflight` checks what can be checked before any work starts (the artifact root can be written, the stages that
will run have what they need), so bad input is one clear error instead of a failure in the middle of a run.
"""

from __future__ import annotations

import contextlib
import os
import tempfile

from llm_core.config import ConfigError
from llm_core.corpus.state import CorpusState, carried_inputs, resolve_state
from llm_core.manifest import parse_ref
from llm_core.pipeline_config import PipelineConfig
from llm_core.registry import STAGES
from llm_core.stage import Input, Stage, StageContext
from llm_core.store import ArtifactRef, ArtifactStore, artifact_key


def enabled_stages(config: PipelineConfig) -> list[str]:
    return [name for name in STAGES if config.is_enabled(name)]


def data_refresh_targets() -> list[str]:
    """The stages a data refresh runs up to (`Stage.ends_data_refresh`), with everything they read."""
    return [name for name, stage in STAGES.items() if stage.ends_data_refresh]


def hold_run_locks(locks: contextlib.ExitStack, config: PipelineConfig, contexts: dict[str, StageContext]) -> bool:
    """Enter, on `locks`, the lock each planned stage holds for the whole run (`Stage.run_lock`: a refresh holds its
    corpus's); True when any was taken, so the caller plans again under them."""
    held = False
    for name in contexts:
        lock = STAGES[name].run_lock(config)
        if lock is not None:
            locks.enter_context(lock)
            held = True
    return held


def input_sources(config: PipelineConfig, name: str) -> dict[str, str]:
    """Input name -> the upstream stage that stage `name` reads in this run: its `input_stages` (given its own
    config), each `Input` resolved against the stages that `config` enables."""
    sources: dict[str, str] = {}
    for input_name, spec in STAGES[name].input_stages(config.section(name)).items():
        spec = Input((spec,)) if isinstance(spec, str) else spec
        if spec.only_with is not None and not config.is_enabled(spec.only_with):
            continue
        enabled = [stage for stage in spec.stages if config.is_enabled(stage)]
        if enabled or not spec.optional:
            sources[input_name] = (enabled or list(spec.stages))[0]  # a disabled required stage: planning says so
    return sources


def with_corpus_only_when_crawled(config: PipelineConfig) -> PipelineConfig:
    """A corpus grows by crawl snapshots: with the `crawl` stage off (a run on curated text alone) the `corpus`
    stage, and `promote`, which moves a corpus's champion, are off too."""
    if config.is_enabled("crawl") or not config.is_enabled("corpus"):
        return config
    off = {name: config.section(name).model_copy(update={"enabled": False}) for name in ("corpus", "promote")}
    return config.model_copy(update=off)


def corpus_state(config: PipelineConfig, store: ArtifactStore) -> CorpusState | None:
    """What this night carries over from earlier nights of its corpus (None with the `corpus` stage off: every run
    then stands alone)."""
    return resolve_state(config, store) if config.is_enabled("corpus") else None


def make_context(
    config: PipelineConfig, name: str, inputs: dict[str, ArtifactRef], store: ArtifactStore | None = None,
    state: CorpusState | None = None,
) -> StageContext:
    """The context of stage `name` reading `inputs` (plus what it carries over from earlier nights of the corpus,
    `state`); its output key follows from both."""
    store = store or config.run.store()
    stage: Stage = STAGES[name]
    cfg = config.section(name)
    if state is not None:
        inputs = {**inputs, **carried_inputs(config, state, name, store)}
    key = artifact_key(name, stage.key_config(cfg, config.run), {k: r.key for k, r in inputs.items()}, stage.version)
    return StageContext(stage=name, config=cfg, run=config.run, inputs=inputs, output=store.ref(name, key))


def with_inputs(config: PipelineConfig, name: str, given: dict[str, str]) -> StageContext:
    """The context of one stage reading explicitly named artifacts ('input=KEY'), e.g. an older snapshot."""
    config = with_corpus_only_when_crawled(config)
    store = config.run.store()
    expected = input_sources(config, name)
    unknown = sorted(set(given) - set(expected))
    if unknown:
        raise ConfigError(f"stage {name!r} has no input(s) {unknown}; its inputs are {sorted(expected)}")
    planned = plan(config, [name])[name].inputs
    inputs = {}
    for k in expected:
        if k not in given:
            inputs[k] = planned[k]
            continue
        try:
            inputs[k] = store.find(given[k])
        except KeyError as e:
            raise ConfigError(f"--input {k}={given[k]}: {e.args[0]}") from None
        problems = store.verify(inputs[k], full=store.full_verify(config.run.verify))
        if problems:  # a key the user chose cannot be rebuilt: move it aside (so nothing reads it) and refuse
            where = store.move_aside(inputs[k], "\n".join(problems))
            raise ConfigError(f"--input {k}={given[k]}: artifact {inputs[k]} is invalid (moved to {where}): "
                              f"{problems[0]}")
    for input_name, ref in inputs.items():
        if ref.stage != expected[input_name]:
            raise ConfigError(
                f"input {input_name!r} of {name!r} must come from stage {expected[input_name]!r}, got {ref}"
            )
    return make_context(config, name, inputs, store, corpus_state(config, store))


def pinned_context(config: PipelineConfig, name: str, ref: ArtifactRef) -> StageContext:
    """The context of a committed artifact used as it is (the corpus's tokenizer): a cache hit when run."""
    manifest = config.run.store().manifest(ref)
    inputs = {k: ref.model_copy(update=dict(zip(("stage", "key"), parse_ref(v)))) for k, v in manifest.inputs.items()}
    return StageContext(stage=name, config=config.section(name), run=config.run, inputs=inputs, output=ref)


def check_root_writable(config: PipelineConfig) -> None:
    """ConfigError unless the (local) artifact root can be created and written; object stores are not probed."""
    store = config.run.store()
    if not store.is_local:
        return
    try:
        os.makedirs(store.root, exist_ok=True)
        with tempfile.TemporaryFile(dir=store.root):
            pass
    except OSError as e:
        root = config.run.artifact_root
        raise ConfigError(f"run.artifact_root {root!r} is not writable: {e.strerror or e}") from None


def preflight(config: PipelineConfig, contexts: dict[str, StageContext]) -> None:
    """Before any work: the artifact root is writable and every stage that will run (not yet committed) passes its
    own `check`. Raises ConfigError naming the problem."""
    check_root_writable(config)
    store = config.run.store()
    for name, ctx in contexts.items():
        if not store.is_committed(ctx.output):
            STAGES[name].check(ctx.config)


def plan(config: PipelineConfig, targets: list[str] | None = None) -> dict[str, StageContext]:
    """Contexts of `targets` and everything upstream of them (all enabled stages if None), in run order."""
    config = with_corpus_only_when_crawled(config)
    unknown = [t for t in targets or [] if t not in STAGES]
    if unknown:
        raise ConfigError(f"unknown stage(s) {unknown}; stages are {list(STAGES)}")
    store = config.run.store()
    contexts: dict[str, StageContext] = {}
    state = corpus_state(config, store)

    def resolve(name: str, chain: tuple[str, ...]) -> StageContext:
        if name in contexts:
            return contexts[name]
        if name in chain:
            raise ConfigError(f"stage cycle: {' -> '.join((*chain, name))}")
        if not config.is_enabled(name):
            needed_by = f" (needed by {chain[-1]!r})" if chain else ""
            raise ConfigError(f"stage {name!r} is disabled{needed_by}: set {name}.enabled=true")
        if name == "bpe" and state is not None and state.tokenizer is not None:
            contexts[name] = pinned_context(config, name, state.tokenizer)
            return contexts[name]
        inputs = {
            input_name: resolve(upstream, (*chain, name)).output
            for input_name, upstream in input_sources(config, name).items()
        }
        contexts[name] = make_context(config, name, inputs, store, state)
        return contexts[name]

    for name in targets or enabled_stages(config):
        resolve(name, ())
    order = list(STAGES)
    return dict(sorted(contexts.items(), key=lambda item: order.index(item[0])))
