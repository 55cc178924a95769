"""Models in and out of artifacts, under a folder of the artifact (`model/model.safetensors` + `model/config.json`).

safetensors reads and writes local files, so files are staged through a temporary local folder; artifact access
goes through the store (fsspec), so this works on S3 too.

Every model any command or stage loads comes through `_load`, which trusts nothing unchecked: it reads only the
files the manifest lists, checks each local copy's size and sha256 against the manifest (always: the bytes are read
to load them anyway, and a model is the one input whose damage shows only as wrong replies), and refuses weights
that hold NaN or inf, naming the file.
"""

from __future__ import annotations

import os
import tempfile

import fsspec
import torch

from llm_core.model import CONFIG_FILE, GPT, WEIGHTS_FILE
from llm_core.post.reward_model import ScalarHeadModel
from llm_core.store import ArtifactError, ArtifactReader, ArtifactRef, ArtifactStore, ArtifactWriter, file_sha256
from llm_core.tokenizer import Tokenizer, load_tokenizer
from llm_core.tools.base import Tool

MODEL_DIR = "model"
_LOCAL_FS = fsspec.filesystem("file")
CHAT_MODEL_STAGES = ("pretrain", "sft", "rlhf")


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


def _check_finite(model: torch.nn.Module, where: str) -> None:
    """ArtifactError naming the weights file and tensor if any weight is NaN or inf."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            bad = int((~torch.isfinite(tensor)).sum())
            raise ArtifactError(f"{where}/{WEIGHTS_FILE}: tensor {name} holds {bad} NaN or inf values: "
                                "refusing to load")


def _load(cls: type[GPT] | type[ScalarHeadModel], reader: ArtifactReader, folder: str, device: str | torch.device):
    """Load a model saved under `folder/`; any failure (a truncated or corrupt file) names the artifact's files."""
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
    return _load(GPT, reader, folder, device)


def load_scalar_model(
    reader: ArtifactReader, folder: str = MODEL_DIR, device: str | torch.device = "cpu"
) -> ScalarHeadModel:
    return _load(ScalarHeadModel, reader, folder, device)


def save_model_files(writer: ArtifactWriter, model: GPT | ScalarHeadModel, folder: str = MODEL_DIR) -> None:
    """Write the model's files under `folder/` of the artifact, each atomically."""
    with tempfile.TemporaryDirectory() as tmp:
        model.save(tmp)
        for name in sorted(os.listdir(tmp)):
            writer.put_file(os.path.join(tmp, name), f"{folder}/{name}")


def load_chat_model(store: ArtifactStore, key: str, device: str | torch.device = "cpu") -> tuple[GPT, Tokenizer, str]:
    """A chat-capable model artifact (`pretrain`, `sft` or `rlhf`) by key, key prefix or 'stage/key', with the
    tokenizer found in its lineage. Returns (model, tokenizer, 'stage/key')."""
    ref = store.find(key)
    if ref.stage not in CHAT_MODEL_STAGES:
        raise ValueError(f"{ref} is a {ref.stage!r} artifact; chat needs one of {CHAT_MODEL_STAGES}")
    tokenizers = [m for _, m in store.lineage(ref) if m.stage == "bpe"]
    if not tokenizers:
        raise ValueError(f"no bpe (tokenizer) artifact in the lineage of {ref}")
    tokenizer = load_tokenizer(store.reader(store.ref("bpe", tokenizers[0].key)))
    return load_gpt(store.reader(ref), device=device).eval(), tokenizer, str(ref)


def index_for(store: ArtifactStore, model: str) -> ArtifactRef | None:
    """The newest committed `index` artifact (the chat's search tool) built from documents the model `'stage/key'`
    was trained on: one of the index's inputs is in the model's lineage. None when there is none."""
    lineage = {f"{m.stage}/{m.key}" for _, m in store.lineage(store.find(model))}
    built = [m for m in store.list("index") if set(m.inputs.values()) & lineage]
    return store.ref("index", built[-1].key) if built else None


def chat_tools(store: ArtifactStore, model: str) -> list[Tool]:
    """The tools of a chat with `model` ('stage/key'): Python, and search over the index of its documents if built."""
    from llm_core.tools.python_tool import PythonTool  # here, not at the top: the CLI imports this module at start

    tools: list[Tool] = [PythonTool()]
    index = index_for(store, model)
    if index is not None:
        from llm_core.index.search_index import SearchIndex
        from llm_core.tools.search_tool import SearchTool

        tools.append(SearchTool(SearchIndex.load(store.reader(index))))
    return tools
