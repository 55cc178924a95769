"""Training checkpoints inside an (uncommitted) artifact, so a killed or retried run resumes where it stopped.

Layout, under `prefix` (default `checkpoints/`):

    checkpoints/step-00000500/model.safetensors   weights (GPT.save)
    checkpoints/step-00000500/config.json         model config
    checkpoints/step-00000500/state.pt            optimizer state, step, loop history, batch-source state
    checkpoints/latest.json                       {"step": 500, "dir": "checkpoints/step-00000500"}

`latest.json` is written last (atomically), so it always names a complete checkpoint: a crash while writing leaves
the previous one in force. `state.pt` holds only tensors, numbers, strings, lists and dicts (written with
`torch.save`) and is read back with `torch.load(weights_only=True)`: nothing is unpickled.
Older checkpoints beyond `keep` are removed after a new one is in place.
"""

from __future__ import annotations

import posixpath
import tempfile
from typing import Any

import torch
from safetensors.torch import load_model

from llm_core.model import CONFIG_FILE, GPT, WEIGHTS_FILE
from llm_core.store import ArtifactError, ArtifactWriter

STATE_FILE = "state.pt"
LATEST = "latest.json"


class CheckpointStore:
    """Save and find checkpoints of a GPT and its training state in an artifact."""

    def __init__(self, writer: ArtifactWriter, prefix: str = "checkpoints", keep: int = 1):
        assert keep >= 1, "keep at least one checkpoint"
        self.writer, self.prefix, self.keep = writer, prefix, keep

    def _name(self, *parts: str) -> str:
        return posixpath.join(self.prefix, *parts)

    def latest_step(self) -> int | None:
        if not self.writer.exists(self._name(LATEST)):
            return None
        return int(self.writer.read_json(self._name(LATEST))["step"])

    def save(self, step: int, model: GPT, state: dict[str, Any]) -> None:
        directory = f"step-{step:08d}"
        with tempfile.TemporaryDirectory() as tmp:
            model.save(tmp)
            torch.save(state, posixpath.join(tmp, STATE_FILE))
            for name in (WEIGHTS_FILE, CONFIG_FILE, STATE_FILE):
                self.writer.put_file(posixpath.join(tmp, name), self._name(directory, name))
        self.writer.write_json(self._name(LATEST), {"step": step, "dir": self._name(directory)})
        for old in self._steps()[:-self.keep]:
            self.writer.remove(self._name(f"step-{old:08d}"))

    def load_latest(self, model: GPT, device: torch.device | str) -> dict[str, Any] | None:
        """Load the newest checkpoint's weights into `model`; return its state dict (None if there is none)."""
        if (step := self.latest_step()) is None:
            return None
        directory = f"step-{step:08d}"
        with tempfile.TemporaryDirectory() as tmp:
            for name in (WEIGHTS_FILE, STATE_FILE):
                self.writer.get_file(self._name(directory, name), posixpath.join(tmp, name))
            try:
                load_model(model, posixpath.join(tmp, WEIGHTS_FILE), device=str(device))
                return torch.load(posixpath.join(tmp, STATE_FILE), map_location=device, weights_only=True)
            except Exception as e:  # safetensors and torch errors do not name the checkpoint they read
                where = self.writer.store.display_path(self.writer.ref, self._name(directory, ""))
                raise ArtifactError(f"{where}: cannot load checkpoint ({WEIGHTS_FILE}, {STATE_FILE}): "
                                    f"{type(e).__name__}: {e}") from e

    def _steps(self) -> list[int]:
        names = self.writer.files(self._name("step-*", STATE_FILE))
        return sorted(int(posixpath.basename(posixpath.dirname(n)).removeprefix("step-")) for n in names)

    def remove_all(self) -> None:
        self.writer.remove(self.prefix)
