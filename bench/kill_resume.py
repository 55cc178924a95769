"""Kills survived per data stage: each sharded stage of the micro config is SIGKILLed at several points in the
middle of its shards, then run again; the rerun must commit counts equal to the rows in its files and the same
content manifest as an uninterrupted run. Two uninterrupted runs (the peer) show which stages are deterministic
at all.

    .venv/bin/python bench/kill_resume.py [--points 4]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]
from hostile import kill_stage, rows_match_counts  # noqa: E402
from test_kill_resume import DATA_STAGES, EXTRA, KILL_POINTS, config_for  # noqa: E402

from llm_core.pipeline import plan  # noqa: E402
from llm_core.registry import STAGES  # noqa: E402
from llm_core.stage import run_stage  # noqa: E402
from llm_core.store import MANIFEST  # noqa: E402


def build(root: Path) -> dict[str, bytes]:
    """Every data stage uninterrupted; stage -> its content manifest."""
    out = {}
    for name, ctx in plan(config_for(root, "tokenize")).items():
        run_stage(STAGES[name], ctx)
        out[name] = (root / name / ctx.output.key / MANIFEST).read_bytes()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--points", type=int, default=4, help="kill points per stage (calls survived 0, 1, 2, ...)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        reference = build(Path(tmp) / "ref")
        peer = build(Path(tmp) / "peer")
        print(f"{'stage':9} {'kills':>5} {'reruns ok':>9} {'same manifest':>13} | two uninterrupted runs same")
        for stage, (module, cls_name, method, survive) in KILL_POINTS.items():
            points = sorted({round(survive * i / max(1, args.points - 1)) for i in range(args.points)})
            killed = ok = same = 0
            for calls in points:
                root = Path(tmp) / f"{stage}-{calls}"
                shutil.copytree(Path(tmp) / "ref", root)
                for name in DATA_STAGES[DATA_STAGES.index(stage):]:
                    shutil.rmtree(root / name)
                kill_stage(root, stage, (module, cls_name, method, calls), EXTRA)
                killed += 1
                ctx = plan(config_for(root, stage), [stage])[stage]
                run_stage(STAGES[stage], ctx)
                try:
                    rows_match_counts(stage, ctx)
                    ok += 1
                except AssertionError as e:
                    print(f"  {stage} killed after {calls} calls of {cls_name}.{method}: {e}")
                same += (root / stage / ctx.output.key / MANIFEST).read_bytes() == reference[stage]
                shutil.rmtree(root)
            print(f"{stage:9} {killed:>5} {ok:>9} {same:>13} | {reference[stage] == peer[stage]}", flush=True)
        for stage in ("bpe",):
            same = reference[stage] == peer[stage]
            print(f"{stage:9} {'-':>5} {'-':>9} {'-':>13} | {same} (not sharded: not killed)")


if __name__ == "__main__":
    main()
