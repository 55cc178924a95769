"""Throughput of the data stages, `crawl` (WARC ingest) and `extract`, side by side with datatrove.

Input: real, distinct HTML pages (trafilatura's dedup would drop repeated ones): the 530 pages of the Debian
package python3.11-doc, served on 127.0.0.1 and crawled with the project's live crawler into WARC files, which
both pipelines then read. Get the pages once (no install needed):

    apt-get download python3.11-doc && dpkg-deb -x python3.11-doc_*.deb /tmp/pydoc
    .venv/bin/python bench/data_throughput.py --html-root /tmp/pydoc/usr/share/doc/python3.11/html \\
        --peer /work/bench-venv/bin/python            # datatrove installed there, never in .venv

The crawled pages are split round-robin over `--files` WARC files (datatrove shards by file: give it as many
files as workers or more). `--scale K` repeats the files K times, to show peak memory does not grow with input.
Each measurement runs in its own process; peak RSS is the highest sum over the process tree (workers included),
and the largest single process, sampled every 50 ms. Times count the stage's work only (worker start-up included, interpreter start-up not).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

BENCH = Path(__file__).resolve().parent
MB = 1e6
WARC_GLOB = "*.warc.gz"


# -- input -------------------------------------------------------------------------------------------------------
class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def crawl_pages(html_root: Path, out_dir: Path) -> dict[str, int]:
    """Serve `html_root` on loopback and crawl it from index.html into one WARC file with the live crawler."""
    from llm_core.crawl.live import crawl_to_warc

    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(html_root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        seed = f"http://127.0.0.1:{server.server_port}/index.html"
        return crawl_to_warc([seed], str(out_dir), max_pages=5000, max_depth=50, pages_per_warc=1_000_000,
                             max_bytes_per_page=5_000_000)
    finally:
        server.shutdown()


def split_warc(source: Path, out_dir: Path, files: int) -> None:
    """Deal the records of one WARC file round-robin into `files` gzipped WARC files (balanced sizes)."""
    from warcio.archiveiterator import ArchiveIterator
    from warcio.warcwriter import WARCWriter

    out_dir.mkdir(parents=True)
    handles = [open(out_dir / f"pages-{i:03d}.warc.gz", "wb") for i in range(files)]
    writers = [WARCWriter(h, gzip=True) for h in handles]
    with open(source, "rb") as f:
        for i, record in enumerate(ArchiveIterator(f)):
            writers[i % files].write_record(record)
    for h in handles:
        h.close()


def crawled_input(html_root: Path | None, work: Path, files: int) -> Path:
    """WARC files of the crawled pages, `files` of them (made once per `work` folder, then reused)."""
    base = work / f"warc-{files}f-1x"
    if not base.exists():
        if html_root is None:
            raise SystemExit(f"no crawled input in {base}: give --html-root (see the recipe in --help)")
        crawled = work / "crawl-once"
        if not list(crawled.glob("*.warc.gz")):
            print(f"crawling {html_root} over loopback ...", flush=True)
            print("  ", crawl_pages(html_root, crawled), flush=True)
        split_warc(next(crawled.glob("*.warc.gz")), base, files)
    return base


def scaled_input(base: Path, work: Path, scale: int) -> Path:
    """`scale` copies of every WARC file of `base` (symlinks with distinct names), to grow the input."""
    if scale == 1:
        return base
    scaled = work / f"{base.name}-{scale}x"
    if not scaled.exists():
        scaled.mkdir()
        for k in range(scale):
            for f in sorted(base.glob(WARC_GLOB)):
                os.symlink(f.resolve(), scaled / f"r{k:03d}-{f.name}")
    return scaled


# -- measurement -------------------------------------------------------------------------------------------------
def _tree_rss_bytes(pid: int) -> tuple[int, int]:
    """Resident memory of a process and all its descendants (Linux /proc): (sum, largest process)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, largest, todo = 0, 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        largest = max(largest, rss.get(p, 0))
        todo.extend(children.get(p, []))
    return total, largest


class Stalled(RuntimeError):
    """A measured command ran past its time limit and was killed."""


def measured(cmd: list[str], limit_s: float | None = None) -> dict:
    """Run a command that prints one JSON line last; add the peak RSS of its process tree and of its largest
    process. Past `limit_s` the command's whole process group is killed and `Stalled` raised."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=BENCH.parent,
                            start_new_session=True)
    peak = peak_process = 0
    started = time.monotonic()
    while proc.poll() is None:
        tree, largest = _tree_rss_bytes(proc.pid)
        peak, peak_process = max(peak, tree), max(peak_process, largest)
        if limit_s is not None and time.monotonic() - started > limit_s:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise Stalled(f"{cmd[1]} {cmd[2]} killed after {limit_s:.0f} s")
        time.sleep(0.05)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err[-3000:]}")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_rss_mb"] = round(peak / MB, 1)
    result["peak_process_rss_mb"] = round(peak_process / MB, 1)
    return result


def run_ours_stage(stage: str, warc_dir: str, root: str, workers: int, fast: bool) -> dict:
    """One stage of the project's crawl -> extract chain on the WARC files; upstream must already be committed.

    The two stages are wired here directly rather than through the registry, so the benchmark imports only
    what they need."""
    from llm_core.config import RunConfig
    from llm_core.crawl import CrawlConfig, CrawlStage
    from llm_core.extract import ExtractConfig, ExtractStage
    from llm_core.stage import StageContext, run_stage
    from llm_core.store import ArtifactStore, artifact_key

    run = RunConfig(artifact_root=root, workers=workers)
    store = ArtifactStore(root)
    chain = [(CrawlStage(), CrawlConfig(warc=[f"{warc_dir}/{WARC_GLOB}"])), (ExtractStage(), ExtractConfig(fast=fast))]
    inputs: dict = {}
    for runner, config in chain:
        key = artifact_key(runner.name, runner.key_config(config, run), {k: r.key for k, r in inputs.items()},
                           runner.version)
        ctx = StageContext(stage=runner.name, config=config, run=run, inputs=inputs,
                           output=store.ref(runner.name, key))
        if runner.name == stage:
            t0 = time.perf_counter()
            manifest, _ = run_stage(runner, ctx)
            return {"stage": stage, "seconds": round(time.perf_counter() - t0, 3), "counts": manifest.counts}
        assert store.is_committed(ctx.output), f"run the {runner.name} stage first"
        inputs = {name: ctx.output for name in ExtractStage().input_stages(None)}
    raise ValueError(f"unknown stage {stage!r}")


def _extract_html(html: bytes) -> bool:
    import trafilatura

    text = trafilatura.extract(html.decode("utf-8", "replace"), favor_precision=True, include_comments=False,
                               deduplicate=True)
    return bool(text)


def run_ceiling(warc_dir: str, workers: int) -> dict:
    """trafilatura.extract alone on every HTML response, on `workers` processes: no I/O, no decoding logic."""
    from multiprocessing import get_context

    from fastwarc.warc import ArchiveIterator, WarcRecordType

    def bodies():
        for path in sorted(Path(warc_dir).glob(WARC_GLOB)):
            with open(path, "rb") as f:
                for record in ArchiveIterator(f, record_types=WarcRecordType.response):
                    if b"text/html" in (record.http_headers.get("Content-Type") or "").encode():
                        yield record.reader.read()

    t0 = time.perf_counter()
    with get_context("forkserver").Pool(workers) as pool:
        outcomes = list(pool.imap_unordered(_extract_html, bodies(), chunksize=4))
    return {"seconds": round(time.perf_counter() - t0, 3), "records": len(outcomes), "documents": sum(outcomes)}


def bench_ours(warc_dir: Path, work: Path, workers: int, fast: bool) -> dict[str, dict]:
    root = tempfile.mkdtemp(prefix="artifacts-", dir=work)
    cmd = [sys.executable, __file__, "--warc-dir", str(warc_dir), "--workers", str(workers), "--root", root,
           *(["--fast"] if fast else [])]
    return {stage: measured([*cmd, "--ours-stage", stage]) for stage in ("crawl", "extract")}


def bench_peer(python: str, warc_dir: Path, work: Path, workers: int, timeout_s: float,
               limit_s: float) -> dict[str, dict] | None:
    """datatrove's two runs, or None (with a message) if one stalls past `limit_s`."""
    out = {}
    for mode in ("ingest", "extract"):
        out_dir = tempfile.mkdtemp(prefix=f"datatrove-{mode}-", dir=work)
        try:
            out[mode] = measured([python, str(BENCH / "datatrove_peer.py"), mode, "--warc-dir", str(warc_dir),
                                  "--out", out_dir, "--workers", str(workers), "--timeout", str(timeout_s)],
                                 limit_s)
        except Stalled as e:
            print(f"datatrove stalled, no peer figures: {e}", flush=True)
            return None
    return out


def peer_version(python: str) -> str:
    code = "from importlib.metadata import version as v; print(v('datatrove'), v('trafilatura'))"
    dt_version, tf_version = subprocess.check_output([python, "-c", code], text=True).split()
    return f"datatrove {dt_version} (trafilatura {tf_version})"


# -- report ------------------------------------------------------------------------------------------------------
def _rate(n: float, seconds: float) -> str:
    if seconds <= 0:
        return "-"
    rate = n / seconds
    return f"{rate:,.1f}" if rate >= 10 else f"{rate:.2f}"


def report(ours: dict, peer: dict | None, warc_bytes: int, workers: int, peer_name: str, fast: bool) -> str:
    crawl, extract = ours["crawl"], ours["extract"]
    c, e = crawl["counts"], extract["counts"]
    total_s = crawl["seconds"] + extract["seconds"]
    rows = [
        ("crawl-ingest  records/s (WARC records in)", _rate(c.get("records", 0), crawl["seconds"])),
        ("crawl-ingest  MB/s (WARC .gz bytes)", _rate(warc_bytes / MB, crawl["seconds"])),
        ("extract       records/s (pages in)", _rate(e["input"], extract["seconds"])),
        ("extract       MB/s (HTML bytes)", _rate(e.get("input_bytes", 0) / MB, extract["seconds"])),
        ("end to end    docs/s (documents out)", _rate(e["kept"], total_s)),
        ("end to end    MB/s (WARC .gz bytes)", _rate(warc_bytes / MB, total_s)),
        ("documents out / pages in", f"{e['kept']} / {e['input']}"),
        ("text characters out", f"{e.get('text_chars', 0):,}"),
        ("seconds (ingest + extract)", f"{crawl['seconds']:.1f} + {extract['seconds']:.1f}"),
        ("peak RSS MB, ingest / extract", f"{crawl['peak_rss_mb']:.0f} / {extract['peak_rss_mb']:.0f}"),
        ("largest process RSS MB, ingest / extract",
         f"{crawl['peak_process_rss_mb']:.0f} / {extract['peak_process_rss_mb']:.0f}"),
    ]
    if "ceiling" in ours:
        ceiling = ours["ceiling"]
        rows.append(("trafilatura alone, same workers: docs/s", _rate(ceiling["documents"], ceiling["seconds"])))
    peer_rows = ["-"] * len(rows)
    if peer:  # datatrove cannot time extraction apart from reading: its extract row is (end to end - ingest)
        ing, ext = peer["ingest"], peer["extract"]
        extract_only = ext["seconds"] - ing["seconds"]
        peer_rows = [
            "-",
            _rate(warc_bytes / MB, ing["seconds"]),
            f"{_rate(ing['records'], extract_only)} (derived)",
            "-",
            _rate(ext["documents"], ext["seconds"]),
            _rate(warc_bytes / MB, ext["seconds"]),
            f"{ext['documents']} / {ext['records']}",
            f"{ext.get('text_chars', 0):,}",
            f"{ing['seconds']:.1f} (ingest only); {ext['seconds']:.1f} (end to end)",
            f"{ing['peak_rss_mb']:.0f} / {ext['peak_rss_mb']:.0f}",
            f"{ing['peak_process_rss_mb']:.0f} / {ext['peak_process_rss_mb']:.0f}",
        ] + ["-"] * (len(rows) - 11)
    width = max(len(r[0]) for r in rows)
    head = f"{'':{width}}  {'llm_core':>22}  {peer_name if peer else 'peer: no figures'}"
    title = f"{workers} workers, {warc_bytes / MB:.1f} MB of WARC" + (", our extract.fast=true" if fast else "")
    lines = [title, head, "-" * len(head)]
    lines += [f"{label:{width}}  {mine:>22}  {theirs}" for (label, mine), theirs in zip(rows, peer_rows)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--html-root", type=Path, help="folder of the HTML pages to crawl (see above); needed once per --work")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "llm-bench-data")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--files", type=int, default=8, help="WARC files the crawled pages are split into")
    parser.add_argument("--warcs", type=Path, help="use the *.warc.gz files of this folder (e.g. data/warc) instead")
    parser.add_argument("--scale", type=int, default=1, help="repeat the input this many times")
    parser.add_argument("--ceiling", action="store_true", help="also time trafilatura alone on the same pages")
    parser.add_argument("--fast", action="store_true", help="our extract with extract.fast=true (no fallbacks)")
    parser.add_argument("--peer", metavar="PYTHON", help="python of an environment with datatrove installed")
    parser.add_argument("--peer-timeout", type=float, default=10.0, help="datatrove's per-document timeout (s)")
    parser.add_argument("--peer-limit", type=float, default=900.0,
                        help="kill a datatrove run after this many seconds (its executor can stall)")
    parser.add_argument("--json", action="store_true", help="print the raw figures as JSON too")
    parser.add_argument("--filters", action="store_true", help="then run bench/filter_throughput.py (filter stage)")
    parser.add_argument("--ours-stage", help=argparse.SUPPRESS)
    parser.add_argument("--warc-dir", help=argparse.SUPPRESS)
    parser.add_argument("--root", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.ours_stage == "ceiling":  # child processes of `measured`
        print(json.dumps(run_ceiling(args.warc_dir, args.workers)))
        return
    if args.ours_stage:
        print(json.dumps(run_ours_stage(args.ours_stage, args.warc_dir, args.root, args.workers, args.fast)))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    base = args.warcs or crawled_input(args.html_root, args.work, args.files)
    warc_dir = scaled_input(base, args.work, args.scale)
    warc_bytes = sum(f.stat().st_size for f in warc_dir.glob(WARC_GLOB))
    ours = bench_ours(warc_dir, args.work, args.workers, args.fast)
    if args.ceiling:
        ours["ceiling"] = measured([sys.executable, __file__, "--warc-dir", str(warc_dir), "--workers",
                                    str(args.workers), "--ours-stage", "ceiling"])
    peer = None
    if args.peer:
        peer = bench_peer(args.peer, warc_dir, args.work, args.workers, args.peer_timeout, args.peer_limit)
    print(report(ours, peer, warc_bytes, args.workers, peer_version(args.peer) if peer else "",
                 args.fast))
    if args.json:
        print(json.dumps({"ours": ours, "peer": peer, "warc_bytes": warc_bytes}))
    if args.filters:
        subprocess.run([sys.executable, str(BENCH / "filter_throughput.py"), "--workers", str(args.workers),
                        "--peer-python", args.peer or ""], check=True)


if __name__ == "__main__":
    main()
