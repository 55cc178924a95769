"""Models in and out of artifacts, under a folder of the artifact (`model/model.safetensors` + `model/config.json`).

safetensors reads and writes local files, so files are staged through a temporary local folder; artifact access
goes through the store (fsspec), so this works on S3 too.
"""

from __future__ import annotations

import os
import tempfile

import torch

from llm_core.model import CONFIG_FILE, GPT, WEIGHTS_FILE
from llm_core.post.reward_model import ScalarHeadModel
from llm_core.store import ArtifactError, ArtifactReader, ArtifactRef, ArtifactStore, ArtifactWriter
from llm_core.tokenizer import Tokenizer, load_tokenizer
from llm_core.tools.base import Tool

MODEL_DIR = "model"
CHAT_MODEL_STAGES = ("pretrain", "sft", "rlhf")


def _download(reader: ArtifactReader, folder: str, local: str) -> str:
    names = reader.files(f"{folder}/*")
    if not names:
        raise FileNotFoundError(f"artifact {reader.ref} has no {folder}/ folder (it has {reader.files()[:10]})")
    for name in names:
        reader.get_file(name, os.path.join(local, os.path.basename(name)))
    return local


def _load(cls: type[GPT] | type[ScalarHeadModel], reader: ArtifactReader, folder: str, device: str | torch.device):
    """Load a model saved under `folder/`; any failure (a truncated or corrupt file) names the artifact's files."""
    with tempfile.TemporaryDirectory() as tmp:
        local = _download(reader, folder, tmp)
        try:
            return cls.load(local, device)
        except Exception as e:  # safetensors, json and torch errors do not say which artifact file they read
            where = reader.store.display_path(reader.ref, folder)
            raise ArtifactError(f"{where}/{WEIGHTS_FILE} (with {CONFIG_FILE}): cannot load the model: "
                                f"{type(e).__name__}: {e}") from e


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
