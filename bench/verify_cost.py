"""What checking a cache hit costs: `ArtifactStore.verify` size-only and full (sha256), side by side with coreutils
`sha256sum` over the same files (the peer: the plain cost of hashing them), on every artifact of a store.

    .venv/bin/llmpipe stage tokenize --config configs/tiny.yaml      # the tiny run's data artifacts
    .venv/bin/python bench/verify_cost.py --root ./artifacts [--reps 5]
    .venv/bin/python bench/verify_cost.py --synthetic-mb 512      # one artifact of 16 random files, for GB rates

The three are run in alternating blocks (one pass over the whole store each), `--reps` times; figures are medians,
in seconds and in seconds per GB of artifact files. The files are in the page cache after the first pass, so this
is the cost on a warm cache (what a rerun right after a run pays); a cold read adds the disk's time.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from llm_core.store import ArtifactStore  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="./artifacts")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--synthetic-mb", type=int, default=0, help="measure on a synthetic artifact of this size")
    args = parser.parse_args()
    if args.synthetic_mb:
        with tempfile.TemporaryDirectory() as tmp:
            writer = ArtifactStore(tmp).writer(ArtifactStore(tmp).ref("synthetic", "0" * 16))
            for i in range(16):
                writer.write_bytes(f"part-{i:05d}.bin", os.urandom(args.synthetic_mb * (1 << 20) // 16))
            writer.commit(version="1", config={}, inputs={})
            measure(tmp, args.reps)
    else:
        measure(args.root, args.reps)


def measure(root: str, reps: int) -> None:
    store = ArtifactStore(root)
    manifests = store.list()
    refs = [store.ref(m.stage, m.key) for m in manifests]
    paths = [str(Path(store.root) / m.stage / m.key / name) for m in manifests for name in m.files]
    total = sum(e.size for m in manifests for e in m.files.values())
    print(f"{len(refs)} artifacts, {len(paths)} files, {total / 1e6:.1f} MB under {store.root}")

    def size_only() -> None:
        assert not any(store.verify(r, full=False) for r in refs)

    def full() -> None:
        assert not any(store.verify(r, full=True) for r in refs)

    def peer() -> None:
        subprocess.run(["sha256sum", *paths], check=True, stdout=subprocess.DEVNULL)

    sides = {"verify size-only": size_only, "verify full (sha256)": full, "sha256sum (peer)": peer}
    times: dict[str, list[float]] = {name: [] for name in sides}
    full()  # warm the page cache, so every side reads from memory
    for _ in range(reps):
        for name, fn in sides.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    print(f"{'side':24} {'median s':>9} {'s per GB':>9}  (all runs, s)")
    for name, runs in times.items():
        median = statistics.median(runs)
        print(f"{name:24} {median:9.4f} {median / (total / 1e9):9.3f}  {' '.join(f'{t:.4f}' for t in runs)}")


if __name__ == "__main__":
    main()
