"""What one Python tool call costs, side by side with the plain way of isolating it: a fresh interpreter per call
(`python -I -c CODE`, no sandbox at all), the floor of any design that starts a process per call.

    .venv/bin/python bench/python_tool.py [--calls 300]

The calls are the kinds the SFT data and the eval suites make (multi-digit products, letter counts, comparisons,
prints); the two ways alternate call by call so machine load hits both alike. Figures are milliseconds per call
(median, 90th percentile), and the tool's first call (the worker's start) on its own line. Also printed: the load
average, since a busy machine slows both.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from llm_core.tools.python_tool import PythonTool  # noqa: E402

CODES = ["347*29", "'strawberry'.count('r')", "9.9 > 9.11", "print(12345 * 6789)", "import math\nmath.sqrt(1764)"]


def fresh_interpreter(code: str) -> str:
    lines = code.splitlines()
    lines[-1] = lines[-1] if lines[-1].startswith("print(") else f"print(repr({lines[-1]}))"
    return subprocess.run([sys.executable, "-I", "-c", "\n".join(lines)], capture_output=True, text=True).stdout


def summary(name: str, seconds: list[float]) -> str:
    ms = sorted(s * 1000 for s in seconds)
    return f"{name:<22} median {statistics.median(ms):7.2f} ms   p90 {ms[int(len(ms) * 0.9)]:7.2f} ms   n={len(ms)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"python tool": [], "fresh interpreter": []}
    with PythonTool() as tool:
        t0 = time.perf_counter()
        tool("1")
        start = time.perf_counter() - t0
        for i in range(args.calls):
            code = CODES[i % len(CODES)]
            for name, run in (("python tool", tool), ("fresh interpreter", fresh_interpreter)):
                t0 = time.perf_counter()
                out = run(code)
                times[name].append(time.perf_counter() - t0)
                assert out.strip(), (name, code)
        print(f"load average {os.getloadavg()[0]:.2f}, seccomp {tool.seccomp}")
    print(f"{'python tool, 1st call':<22} {start * 1000:7.1f} ms (starts the worker)")
    for name, seconds in times.items():
        print(summary(name, seconds))


if __name__ == "__main__":
    main()
