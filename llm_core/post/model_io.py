"""Models in and out of artifacts, under a folder of the artifact (`model/model.safetensors` + `model/config.json`).

safetensors reads and writes local files, so files are staged through a temporary local folder; artifact access
goes through the store (fsspec), so this works on S3 too.
"""

from __future__ import annotations

import os
import tempfile

import torch

from llm_core.model import GPT
from llm_core.post.reward_model import ScalarHeadModel
from llm_core.store import ArtifactReader, ArtifactStore, ArtifactWriter
from llm_core.tokenizer import Tokenizer, load_tokenizer

MODEL_DIR = "model"
CHAT_MODEL_STAGES = ("pretrain", "sft", "rlhf")


def _download(reader: ArtifactReader, folder: str, local: str) -> str:
    names = reader.files(f"{folder}/*")
    if not names:
        raise FileNotFoundError(f"artifact {reader.ref} has no {folder}/ folder (it has {reader.files()[:10]})")
    for name in names:
        reader.get_file(name, os.path.join(local, os.path.basename(name)))
    return local


def load_gpt(reader: ArtifactReader, folder: str = MODEL_DIR, device: str | torch.device = "cpu") -> GPT:
    with tempfile.TemporaryDirectory() as tmp:
        return GPT.load(_download(reader, folder, tmp), device)


def load_scalar_model(
    reader: ArtifactReader, folder: str = MODEL_DIR, device: str | torch.device = "cpu"
) -> ScalarHeadModel:
    with tempfile.TemporaryDirectory() as tmp:
        return ScalarHeadModel.load(_download(reader, folder, tmp), device)


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
