"""One refresh of a corpus at a time: a lock held from planning a night to its last stage.

Two refreshes of the same corpus planned at once would both build on the same previous corpus and champion and fork
the lineage; the second is refused instead, with the process that holds the lock. On a local root the lock is an
`flock` on `{root}/_corpus/{name}/refresh.lock` (it dies with its process, so a killed run never leaves it held);
object stores have no such lock, and there the schedule must not overlap runs of one corpus (a Prefect deployment's
concurrency limit of 1 does it).
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from collections.abc import Iterator

from llm_core.config import ConfigError
from llm_core.corpus.champion import corpus_folder
from llm_core.store import ArtifactStore

LOCK_FILE = "refresh.lock"


class CorpusBusy(ConfigError):
    """Another run is refreshing the same corpus."""


@contextlib.contextmanager
def refresh_lock(store: ArtifactStore, corpus: str) -> Iterator[None]:
    """Hold the corpus's refresh lock, or raise CorpusBusy at once naming who holds it."""
    if not store.is_local:
        yield
        return
    import fcntl

    folder = corpus_folder(store, corpus)
    os.makedirs(folder, exist_ok=True)
    path = posixpath.join(folder, LOCK_FILE)
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise CorpusBusy(f"corpus {corpus!r} is being refreshed by {holder} ({path}): wait for that run to "
                             "finish, then run again") from None
        try:
            lock.seek(0)
            lock.truncate()
            lock.write(f"process {os.getpid()}")
            lock.flush()
            yield
        finally:
            lock.seek(0)
            lock.truncate()
            fcntl.flock(lock, fcntl.LOCK_UN)
