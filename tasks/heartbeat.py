"""Flow runs end when their work does, not on the next whole second.

Prefect 3.8's sync flow engine sends heartbeats (for crashed-run detection, README "Zombie runs") from a thread that
sleeps in steps of one second, and joins that thread when the run ends, so every flow run, each stage's subflow
included, waits up to a second after its work is done: about 8 s of the tiny pipeline's wall time over its 18
flow runs (BENCHMARKS.md). Prefect's async engine already leaves the thread to stop on its own (`join_on_exit=False`);
importing this module gives the sync engine the same. Heartbeats are sent exactly as before; the thread sees the
stop at its next one-second tick and exits without sending another. `tests/test_stage_mechanics.py` checks the
function still takes that argument, so a Prefect upgrade that changes it fails there rather than silently.
"""

from __future__ import annotations

import functools

from prefect import flow_engine

if not isinstance(flow_engine._send_heartbeats, functools.partial):  # imported twice (reload): wrap once
    flow_engine._send_heartbeats = functools.partial(flow_engine._send_heartbeats, join_on_exit=False)
