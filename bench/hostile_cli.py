"""Hostile input as a user and an operator give it: bad configs and flags, malformed prompts files, damaged and
tampered artifacts, damaged models. Each case runs `llmpipe` (or the model loader) in its own process and is
judged by what a person sees:

- a clear error: a non-zero exit with a message naming the input (no traceback);
- a traceback: any `Traceback` in the output (a bug, whatever the exit);
- a silent success: exit 0 where the input was bad.

Used by `bench/reliability.py`, which prints the table; the peak RSS is the process tree's `ru_maxrss`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WARC = "data/warc/warcio_example.warc.gz"
LLMPIPE = [sys.executable, "-c", "from cli.main import main; main()"]
MEASURED = """
import resource, subprocess, sys
done = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=600)
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(done.stdout + done.stderr)
print(f"@@ {done.returncode} {peak:.0f}")
"""
LOAD_MODEL = """
import sys
from llm_core.train.model_files import load_gpt
from llm_core.store import ArtifactError, ArtifactStore
store = ArtifactStore(sys.argv[1])
try:
    load_gpt(store.reader(store.find(sys.argv[2])))
except ArtifactError as e:
    print(f"error: {e}")
    sys.exit(1)
print("loaded")
"""


@dataclass(frozen=True)
class Case:
    name: str
    argv: list[str]
    expect: str  # words the one-line error must hold (the input it names)


@dataclass(frozen=True)
class Outcome:
    case: Case
    exit_code: int
    peak_mb: float
    output: str

    @property
    def verdict(self) -> str:
        if "Traceback" in self.output:
            return "traceback"
        if self.exit_code == 0:
            return "silent success"
        return "clear error" if self.case.expect in " ".join(self.output.split()) else "unclear error"


def _model_artifact(root: Path, key: str, poison: str) -> None:
    import torch

    from llm_core.model import GPT, WEIGHTS_FILE, GPTConfig
    from llm_core.store import ArtifactStore
    from llm_core.train.model_files import MODEL_DIR, save_model_files

    store = ArtifactStore(str(root))
    ref = store.ref("sft", key)
    writer = store.writer(ref)
    model = GPT(GPTConfig(vocab_size=64, block_size=8, n_layer=1, n_head=2, n_embd=8))
    if poison == "nan":
        with torch.no_grad():
            next(model.parameters())[0, 0] = float("nan")
    save_model_files(writer, model)
    writer.commit(version="1", config={}, inputs={})
    if poison == "flip":
        path = root / "sft" / key / MODEL_DIR / WEIGHTS_FILE
        data = bytearray(path.read_bytes())
        data[-3] ^= 0x01
        path.write_bytes(bytes(data))


def _crawl_artifact(root: Path) -> tuple[str, Path]:
    """A committed crawl artifact of the sample WARC: (key, its folder)."""
    from llm_core.pipeline import plan
    from llm_core.pipeline_config import load_config
    from llm_core.registry import STAGES
    from llm_core.stage import run_stage

    config = load_config("configs/tiny.yaml", [f"run.artifact_root={root}", f"crawl.warc=[{WARC}]",
                                               "crawl.html_dirs=[]", "run.workers=1"])
    ctx = plan(config, ["crawl"])["crawl"]
    run_stage(STAGES["crawl"], ctx)
    return ctx.output.key, root / "crawl" / ctx.output.key


def cases(tmp: Path) -> list[Case]:
    """Every case, its files made under `tmp`."""
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{b}: &{b} [{', '.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi"))
    (tmp / "bomb.yaml").write_text(bomb)
    (tmp / "notes.txt").write_text("not a WARC file\n")
    prompts = {"bad_json": '{"prompt": "fine"', "no_prompt": '{"question": "what?"}',
               "no_content": '{"messages": [{"role": "user"}]}', "strings": '{"messages": ["hi"]}'}
    for name, line in prompts.items():
        (tmp / f"{name}.jsonl").write_text('{"prompt": "What is a watermelon?"}\n' + line + "\n")
    (tmp / "latin1.jsonl").write_bytes(b'{"prompt": "caf\xe9"}\n')
    root = tmp / "root"
    _model_artifact(root, "0000000000000001", "flip")
    _model_artifact(root, "0000000000000002", "nan")
    key, folder = _crawl_artifact(root)
    listed = sorted((folder / "pages").iterdir())[0]
    (folder / "pages" / "part-99999.parquet").write_bytes(listed.read_bytes())
    tampered_root = tmp / "tampered"
    tampered_key, tampered = _crawl_artifact(tampered_root)
    shard = sorted((tampered / "pages").iterdir())[0]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4] = b"XXXX"
    shard.write_bytes(bytes(data))
    out = str(tmp / "out.jsonl")
    gen = [*LLMPIPE, "generate", "-m", "abc", "-o", out, "-p"]
    return [
        Case("empty run.artifact_root", [*LLMPIPE, "plan", "--set", "run.artifact_root="], "run.artifact_root"),
        Case("YAML alias bomb config", [*LLMPIPE, "plan", "-c", str(tmp / "bomb.yaml")], "bomb.yaml expands"),
        Case("config is a folder", [*LLMPIPE, "plan", "-c", str(tmp)], "is a folder"),
        Case("a .txt in crawl.warc", [*LLMPIPE, "plan", "--set", f"crawl.warc=[{tmp}/notes.txt]"], "notes.txt"),
        Case("artifacts ls --stage nosuch", [*LLMPIPE, "artifacts", "ls", "--stage", "nosuch"], "'nosuch'"),
        Case("prompts: malformed JSON line", [*gen, str(tmp / "bad_json.jsonl")], "bad_json.jsonl line 2"),
        Case("prompts: no prompt key", [*gen, str(tmp / "no_prompt.jsonl")], "no_prompt.jsonl line 2"),
        Case("prompts: message without content", [*gen, str(tmp / "no_content.jsonl")], "no_content.jsonl line 2"),
        Case("prompts: messages as strings", [*gen, str(tmp / "strings.jsonl")], "strings.jsonl line 2"),
        Case("prompts: not UTF-8", [*gen, str(tmp / "latin1.jsonl")], "latin1.jsonl: not UTF-8"),
        Case("model: one flipped bit", [sys.executable, "-c", LOAD_MODEL, str(root), "sft/0000000000000001"],
             "model.safetensors: sha256 differs"),
        Case("model: NaN weights", [sys.executable, "-c", LOAD_MODEL, str(root), "sft/0000000000000002"],
             "NaN or inf"),
        Case("file added to a committed artifact", [*LLMPIPE, "artifacts", "verify", "--all", "--set",
                                                    f"run.artifact_root={root}"], "part-99999.parquet: present"),
        Case("--input artifact with 4 bytes changed", [*LLMPIPE, "stage", "extract", "--input",
                                                       f"pages={tampered_key}", "--set",
                                                       f"run.artifact_root={tampered_root}"], "is invalid (moved"),
    ]


def run_case(case: Case) -> Outcome:
    done = subprocess.run([sys.executable, "-c", MEASURED, *case.argv], cwd=REPO, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "PREFECT_SERVER_ANALYTICS_ENABLED": "false"})
    *lines, last = done.stdout.rstrip().splitlines() or ["@@ -1 0"]
    code, peak = last.split()[1:]
    return Outcome(case, int(code), float(peak), "\n".join(lines) + done.stderr)


def as_row(outcome: Outcome) -> dict:
    return {"case": outcome.case.name, "exit": outcome.exit_code, "verdict": outcome.verdict,
            "peak_mb": outcome.peak_mb, "message": json.dumps(" ".join(outcome.output.split())[:110])}
