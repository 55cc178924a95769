"""A trained model's files in its artifact, owned in one place for every training stage: the folder names
(`model/model.safetensors` + `model/config.json`, `history.json`, `result.json`) and saving and loading models.

safetensors reads and writes local files, so files are staged through a temporary local folder; artifact access
goes through the store (fsspec), so this works on S3 too.

Every model any command or stage loads comes through `load_model`, which trusts nothing unchecked: it reads only the
files the manifest lists, checks each local copy's size and sha256 against the manifest (always: the bytes are read
to load them anyway, and a model is the one input whose damage shows only as wrong replies), and refuses weights
that hold NaN or inf, naming the file.
"""

from __future__ import annotations

import os
import tempfile
from typing import Protocol, TypeVar

import fsspec
import torch

from llm_core.model import CONFIG_FILE, GPT, WEIGHTS_FILE
from llm_core.store import ArtifactError, ArtifactReader, ArtifactWriter, file_sha256

MODEL_DIR = "model"
HISTORY_FILE = "history.json"  # train-loss rows, evaluation rows (and samples) of a training run
SAMPLES_FILE = "samples.json"  # replies sampled after training
RESULT_FILE = "result.json"  # the finished run's metrics; written last, so its presence means training is done
_LOCAL_FS = fsspec.filesystem("file")


class SavedModel(Protocol):
    """A model that saves itself to a folder and loads back from one (GPT, the reward model)."""

    @classmethod
    def load(cls, directory: str, device: str | torch.device) -> SavedModel: ...

    def save(self, directory: str) -> None: ...

    def state_dict(self) -> dict[str, torch.Tensor]: ...


M = TypeVar("M", bound=SavedModel)


def _download(reader: ArtifactReader, folder: str, local: str) -> str:
    """Copy the files the manifest lists under `folder/` to `local`, each checked against its manifest entry."""
    entries = reader.manifest.files
    names = reader.files(f"{folder}/*")
    if not names:
        raise FileNotFoundError(f"artifact {reader.ref} has no {folder}/ folder (it has {reader.files()[:10]})")
    for name in names:
        path = reader.get_file(name, os.path.join(local, os.path.basename(name)))
        shown = reader.store.display_path(reader.ref, name)
        if os.path.getsize(path) != entries[name].size:
            raise ArtifactError(f"{shown}: {os.path.getsize(path)} bytes, the manifest says {entries[name].size}: "
                                "the model file was changed after its commit")
        if file_sha256(_LOCAL_FS, path) != entries[name].sha256:
            raise ArtifactError(f"{shown}: sha256 differs from the manifest: "
                                "the model file was changed after its commit")
    return local


def _check_finite(model: SavedModel, where: str) -> None:
    """ArtifactError naming the weights file and tensor if any weight is NaN or inf."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise ArtifactError(f"{where}/{WEIGHTS_FILE}: tensor {name} holds {bad} NaN or inf values: "
                                "refusing to load")


def load_model(cls: type[M], reader: ArtifactReader, folder: str = MODEL_DIR, device: str | torch.device = "cpu") -> M:
    """Load a `cls` saved under `folder/`; any failure (a truncated or corrupt file) names the artifact's files."""
    with tempfile.TemporaryDirectory() as tmp:
        local = _download(reader, folder, tmp)
        where = reader.store.display_path(reader.ref, folder)
        try:
            model = cls.load(local, device)
        except Exception as e:  # safetensors, json and torch errors do not say which artifact file they read
            raise ArtifactError(f"{where}/{WEIGHTS_FILE} (with {CONFIG_FILE}): cannot load the model: "
                                f"{type(e).__name__}: {e}") from e
    _check_finite(model, where)
    return model


def load_gpt(reader: ArtifactReader, folder: str = MODEL_DIR, device: str | torch.device = "cpu") -> GPT:
    return load_model(GPT, reader, folder, device)


def save_model_files(writer: ArtifactWriter, model: SavedModel, folder: str = MODEL_DIR) -> None:
    """Write the model's files under `folder/` of the artifact, each atomically."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save(tmp)
        for name in sorted(os.listdir(tmp)):
            writer.put_file(os.path.join(tmp, name), f"{folder}/{name}")
