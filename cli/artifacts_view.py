"""What `llmpipe artifacts ls` and `llmpipe artifacts show` print: one line per artifact with the facts that tell
them apart (created, crawl snapshot, main count, size), and one artifact's summary (counts, metrics, lineage, files)
without its config, which `--config` adds and `--json` prints whole."""

from __future__ import annotations

import yaml
from rich import box
from rich.console import Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.tree import Tree

from llm_core.store import ArtifactRef, ArtifactStore, Manifest
from tasks.run_summary import main_count

MAX_COUNTS_SHOWN = 12  # a filter artifact counts every reason of every filter; `--json` has them all


def snapshot_of(manifest: Manifest, by_ref: dict[str, Manifest]) -> str:
    """The crawl snapshot an artifact descends from ('' if none: e.g. generated conversations)."""
    seen: set[str] = set()
    todo = [manifest]
    while todo:
        m = todo.pop()
        if m.stage == "crawl":
            return str(m.config.get("snapshot") or "")
        for parent in m.inputs.values():
            if parent not in seen and parent in by_ref:
                seen.add(parent)
                todo.append(by_ref[parent])
    return ""


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TB"


def ls_table(store: ArtifactStore, stage: str | None = None) -> Table:
    """Committed artifacts (of `stage`, if given), oldest first."""
    everything = store.list()
    by_ref = {f"{m.stage}/{m.key}": m for m in everything}
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False, show_edge=False, collapse_padding=True)  # fits 80 columns
    for column, width in (("stage", 11), ("key", 16), ("created (UTC)", 16), ("snapshot", 10)):
        table.add_column(column, no_wrap=True, min_width=width)  # a narrow terminal shortens the counts, not keys
    for column in ("main count", "size"):
        table.add_column(column, justify="right", no_wrap=True)
    for m in everything:
        if stage and m.stage != stage:
            continue
        name, count = main_count(m)
        table.add_row(m.stage, m.key, m.created_at[:16].replace("T", " "), snapshot_of(m, by_ref) or "-",
                      f"{count:,} {name}" if name else "-", human_bytes(sum(f.size for f in m.files.values())))
    return table


def _values_table(title: str, values: dict, limit: int | None = None) -> Table:
    table = Table(title, "value", title_justify="left")
    items = list(values.items())
    for k, v in items[:limit]:
        table.add_row(k, "n/a" if v is None else f"{v:,}" if isinstance(v, int) else f"{v:.6g}")
    if limit is not None and len(items) > limit:
        table.add_row(f"... {len(items) - limit} more", "(--json)")
    return table


def _corpus_table(snapshots: list[dict]) -> Table:
    """A corpus artifact's snapshots: documents and tokens per snapshot, and the total."""
    columns = ("kept_documents", "cross_snapshot_duplicates", "train_tokens", "val_tokens")
    table = Table("snapshot", "documents", "cross-snapshot duplicates", "train tokens", "val tokens",
                  title="corpus", title_justify="left")
    for s in snapshots:
        table.add_row(s["snapshot"], *(f"{s[c]:,}" for c in columns))
    table.add_row("total", *(f"{sum(s[c] for s in snapshots):,}" for c in columns), style="bold")
    return table


def show_summary(store: ArtifactStore, ref: ArtifactRef, with_config: bool = False) -> RenderableType:
    """One artifact: where and when, counts, metrics, lineage back to the sources, files (and its config)."""
    m = store.manifest(ref)
    size = sum(f.size for f in m.files.values())
    parts: list[RenderableType] = [
        f"[bold]{m.stage}/{m.key}[/bold]  {ref.uri}\ncreated {m.created_at}, built in "
        f"{m.timings.get('seconds', 0):.1f} s, version {m.version}, package {m.package_version}, "
        f"{len(m.files)} files, {human_bytes(size)}"]
    if m.counts:
        parts.append(_values_table("counts", m.counts, MAX_COUNTS_SHOWN))
    if m.metrics:
        parts.append(_values_table("metrics", m.metrics, MAX_COUNTS_SHOWN))
    if m.stage == "corpus":
        parts.append(_corpus_table(m.extra.get("tables", {}).get("snapshots", [])))
    tree = Tree("lineage")
    nodes = {0: tree}
    for depth, parent in store.lineage(ref):
        nodes[depth + 1] = nodes[depth].add(f"{parent.stage}/{parent.key}  {parent.created_at[:19]}")
    parts.append(tree)
    files = Table("file", "bytes", "sha256")
    for name, entry in m.files.items():
        files.add_row(name, f"{entry.size:,}", entry.sha256[:16])
    parts.append(files)
    if with_config:
        parts.append("[bold]config[/bold]\n" + escape(_config_text(m.config)))
    else:
        parts.append("[dim]its config: --with-config; the whole manifest as JSON: --json[/dim]")
    return Group(*parts)


def _config_text(config: dict) -> str:
    return yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=100).rstrip()
