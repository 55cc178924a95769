"""Hostile inputs, and the table that judges them.

Part `warc`: hostile WARC files read by this project's WARC reader, side by side with warcio (the peer): records
read of records present, and peak RSS of the reading process tree. Part `cli`: bad configs, flags, prompts files,
tampered artifacts and damaged models given to `llmpipe` and the model loader (`bench/hostile_cli.py`). Then the
hostile table: cases tried, clear errors, tracebacks, silent successes, pages lost, peak RSS.

    .venv/bin/python bench/reliability.py [--part all|warc|cli] [--reps 3] [--bomb-mib 1024] [--json out.json]

Each (input, reader) pair runs in its own child process, the two readers alternating input by input; the peak RSS
is `ru_maxrss` of the child (and its children), the median over `--reps`. "read" counts the records the reader
yielded (pages and skips, a `warc:corrupt` end marker excluded; for warcio, records iterated and read to the
end) before it stopped. warcio keeps bodies encoded, so its figures for bombs say nothing about decoding: they
show the cost of merely reading the record.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
from hostile import bomb, gzip_members, http_response, warc_record  # noqa: E402

sys.path.insert(0, str(REPO))
from bench.hostile_cli import as_row, run_case  # noqa: E402
from bench.hostile_cli import cases as cli_cases  # noqa: E402

HTML = http_response(b"<html><body><p>hello</p></body></html>")

PEAK = """
import json, resource, sys
def peak_mb():
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 1024
"""
OURS = PEAK + """
from llm_core.crawl.warc_reader import Page, read_archive
read, reasons = 0, {}
with open(sys.argv[1], "rb") as f:
    for item in read_archive(f, name=sys.argv[1], source="bench", content_types=["text/html"],
                             max_body_bytes=5_000_000):
        reason = "page" if isinstance(item, Page) else item.reason
        reasons[reason] = reasons.get(reason, 0) + 1
        read += reason != "warc:corrupt"
print(json.dumps({"read": read, "reasons": reasons, "peak": peak_mb()}))
"""
PEER = PEAK + """
from warcio.archiveiterator import ArchiveIterator
read, error = 0, ""
try:
    with open(sys.argv[1], "rb") as f:
        for record in ArchiveIterator(f):
            record.content_stream().read()
            read += 1
except Exception as e:
    error = f"{type(e).__name__}: {e}"[:80]
print(json.dumps({"read": read, "error": error, "peak": peak_mb()}))
"""


def _plain(records: list[bytes]) -> bytes:
    return b"".join(records)


def _lines(n: int) -> list[bytes]:
    return [warc_record(HTML, url=f"http://example.com/{i}") for i in range(n)]


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes(b ^ 0xFF for b in data[at : at + 16]) + data[at + 16 :]


def cases(bomb_mib: int) -> dict[str, Callable[[], tuple[bytes, int]]]:
    """name -> () -> (file bytes, records present). The first 16 are malformed WARC files, then the bombs."""
    six = _lines(6)
    members = [gzip.compress(r) for r in six]

    def bomb_record(encoding: str) -> tuple[bytes, int]:
        return gzip_members([warc_record(http_response(bomb(encoding, bomb_mib), Content_Encoding=encoding))]), 1

    return {
        "truncated file (cut in the 5th record)": lambda: (_plain(six)[: len(_plain(six)) * 2 // 3 + 60], 5),
        "truncated gzip member": lambda: (b"".join(members)[:-20], 6),
        "corrupt gzip member (3rd of 6)": lambda: (b"".join(members[:2]) + _flip(members[2], 20) +
                                                   b"".join(members[3:]), 6),
        "Content-Length longer than block": lambda: (_plain([warc_record(HTML, length=len(HTML) + 500), *six[1:]]), 6),
        "Content-Length shorter than block": lambda: (_plain([warc_record(HTML, length=10), *six[1:]]), 6),
        "Content-Length swallows the next record": lambda: (_plain([warc_record(HTML, length=len(HTML) + 1000),
                                                                    *six[1:]]), 6),
        "Content-Length past the end (10 MB)": lambda: (_plain([warc_record(HTML, length=10_000_000), *six[1:]]), 6),
        "gzip: Content-Length too long": lambda: (gzip_members([warc_record(HTML, length=len(HTML) + 1000),
                                                                *six[1:]]), 6),
        "gzip: Content-Length too short": lambda: (gzip_members([warc_record(HTML, length=10), *six[1:]]), 6),
        "Content-Length not a number": lambda: (_plain([warc_record(HTML).replace(
            f"Content-Length: {len(HTML)}".encode(), b"Content-Length: -x1"), *six[1:]]), 6),
        "no WARC-Type": lambda: (_plain([warc_record(HTML).replace(b"WARC-Type: response\r\n", b""), *six[1:]]), 6),
        "no WARC-Target-URI": lambda: (_plain([warc_record(HTML).replace(b"WARC-Target-URI: http://example.com/\r\n",
                                                                         b""), *six[1:]]), 6),
        "payload not HTTP": lambda: (_plain([warc_record(b"\x00\x01garbage" * 50), *six[1:]]), 6),
        "HTTP headers never end": lambda: (_plain([warc_record(b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n"
                                                               + b"X: y\r\n" * 100), *six[1:]]), 6),
        "bad chunked encoding": lambda: (_plain([warc_record(http_response(b"zz\r\nnot chunked",
                                                                           Transfer_Encoding="chunked")),
                                                 *six[1:]]), 6),
        "gzip header, body not gzip": lambda: (_plain([warc_record(http_response(b"<html>plain</html>",
                                                                                 Content_Encoding="gzip")),
                                                       *six[1:]]), 6),
        "bad version line": lambda: (_plain([warc_record(HTML).replace(b"WARC/1.0", b"WARC/9.9x"), *six[1:]]), 6),
        "empty file": lambda: (b"", 0),
        "not a WARC (HTML)": lambda: ((REPO / "data/html/en/about.html").read_bytes(), 0),
        "random bytes": lambda: (os.urandom(1 << 20), 0),
        "brotli bomb": lambda: bomb_record("br"),
        "zstd bomb": lambda: bomb_record("zstd"),
        "deflate bomb": lambda: bomb_record("deflate"),
        "gzip bomb": lambda: bomb_record("gzip"),
        "huge HTTP headers (20 MB)": lambda: (gzip_members([warc_record(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Big: " + b"a" * 20_000_000 + b"\r\n\r\n<html>x</html>"),
            *six[1:]]), 6),
        "1e5 records of 0 bytes": lambda: (gzip_members([warc_record(b"", url=f"http://e.com/{i}")
                                                         for i in range(100_000)]), 100_000),
    }


def run(script: str, path: str) -> dict:
    done = subprocess.run([sys.executable, "-c", script, path], cwd=REPO, capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        return {"read": None, "error": done.stderr.strip().splitlines()[-1][:80], "peak": None}
    return json.loads(done.stdout.strip().splitlines()[-1])


def warc_part(reps: int, bomb_mib: int) -> list[dict]:
    rows = []
    print(f"{'input':36} {'present':>7} | {'ours read':>9} {'peak MB':>8} | {'warcio read':>11} {'peak MB':>8} | "
          "ours: reasons")
    with tempfile.TemporaryDirectory() as tmp:
        for name, make in cases(bomb_mib).items():
            data, present = make()
            path = os.path.join(tmp, "input.warc.gz" if data[:2] == b"\x1f\x8b" else "input.warc")
            Path(path).write_bytes(data)
            ours, peer = [], []
            for _ in range(reps):  # alternate the two readers, input by input
                ours.append(run(OURS, path))
                peer.append(run(PEER, path))
            o, p = ours[-1], peer[-1]
            o_peak = statistics.median(r["peak"] for r in ours if r["peak"]) if o["peak"] else None
            p_peak = statistics.median(r["peak"] for r in peer if r["peak"]) if p["peak"] else None
            row = {"input": name, "bytes": len(data), "present": present, "ours_read": o["read"],
                   "ours_peak_mb": o_peak, "ours_reasons": o.get("reasons", o.get("error")), "warcio_read": p["read"],
                   "warcio_peak_mb": p_peak, "warcio_error": p.get("error", "")}
            rows.append(row)
            fmt = lambda v: "-" if v is None else f"{v:.0f}"  # noqa: E731
            print(f"{name:36} {present:>7} | {str(o['read']):>9} {fmt(o_peak):>8} | {str(p['read']):>11} "
                  f"{fmt(p_peak):>8} | {json.dumps(row['ours_reasons'])[:90]}", flush=True)
    return rows


def pages_lost(row: dict) -> int:
    """Records present that the reader neither yielded nor covered by a `warc:corrupt` skip naming their bytes."""
    reasons = row["ours_reasons"] if isinstance(row["ours_reasons"], dict) else {}
    return max(0, row["present"] - (row["ours_read"] or 0) - reasons.get("warc:corrupt", 0))


def cli_part() -> list[dict]:
    rows = []
    print(f"\n{'case':40} {'exit':>4} {'verdict':>14} {'peak MB':>8} | what was printed")
    with tempfile.TemporaryDirectory() as tmp:
        for case in cli_cases(Path(tmp)):
            row = as_row(run_case(case))
            rows.append(row)
            print(f"{row['case']:40} {row['exit']:>4} {row['verdict']:>14} {row['peak_mb']:>8.0f} | "
                  f"{row['message']}", flush=True)
    return rows


def hostile_table(warc: list[dict], cli: list[dict]) -> dict:
    verdicts = [r["verdict"] for r in cli]
    table = {
        "cases tried": len(warc) + len(cli),
        "clear errors": verdicts.count("clear error"),
        "unclear errors": verdicts.count("unclear error"),
        "tracebacks": verdicts.count("traceback") + sum(r["ours_read"] is None for r in warc),
        "silent successes": verdicts.count("silent success"),
        "pages lost": sum(pages_lost(r) for r in warc),
        "peak RSS MB": max([r["ours_peak_mb"] or 0 for r in warc] + [r["peak_mb"] for r in cli] + [0]),
    }
    print("\n| " + " | ".join(table) + " |\n|" + "---:|" * len(table))
    print("| " + " | ".join(f"{v:,.0f}" for v in table.values()) + " |")
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["all", "warc", "cli"], default="all")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--bomb-mib", type=int, default=1024, help="decoded size of each bomb")
    parser.add_argument("--json", help="write the results here too")
    args = parser.parse_args()
    warc = warc_part(args.reps, args.bomb_mib) if args.part in ("all", "warc") else []
    cli = cli_part() if args.part in ("all", "cli") else []
    table = hostile_table(warc, cli)
    if args.json:
        Path(args.json).write_text(json.dumps({"warc": warc, "cli": cli, "table": table}, indent=2))


if __name__ == "__main__":
    main()
