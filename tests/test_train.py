"""The training loop on real text: schedules, loss going down, kill + resume equal to an uninterrupted run."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from llm_core.model import GPT, GPTConfig
from llm_core.store import ArtifactStore
from llm_core.train import CheckpointStore, DistEnv, LoopSettings, LRSchedule, OptimSection, Trainer
from llm_core.train.data import RandomWindowBatches, TokenWindows
from llm_core.train.evaluation import LMEvaluator, unigram_entropy
from llm_core.train.pretrain import next_token_loss

CPU = DistEnv(0, 1, 0, torch.device("cpu"))


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def shakespeare(data_dir) -> tuple[np.ndarray, np.ndarray, str]:
    """nanoGPT's character-level encoding of tiny shakespeare (65 characters; first 200k kept), 90/10 split."""
    text = (data_dir / "tinyshakespeare/input.txt").read_text(encoding="utf-8")
    chars = "".join(sorted(set(text)))
    ids = np.array([chars.index(c) for c in text[:200_000]], dtype=np.uint16)
    cut = int(0.9 * len(ids))
    return ids[:cut], ids[cut:], chars


def make_trainer(train_ids, max_steps, checkpoints=None, evaluate=None, on_progress=None, grad_accum=1,
                 batch_size=8, rank=0, world=1, env=CPU, checkpoint_every=0) -> Trainer:
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=65, block_size=32, n_layer=2, n_head=2, n_embd=32, dropout=0.1))
    batches = RandomWindowBatches(TokenWindows.from_arrays([train_ids], 32), batch_size, grad_accum, rank, world, 7)
    settings = LoopSettings(max_steps=max_steps, grad_accum=grad_accum, log_every=1, seed=3,
                            checkpoint_every=checkpoint_every, tokens_per_step=batch_size * 32 * grad_accum)
    return Trainer(model, OptimSection(lr=3e-3, min_lr=3e-4, warmup_steps=5), batches, next_token_loss, settings,
                   env, checkpoints, evaluate, on_progress)


def test_schedules():
    cosine = LRSchedule(1e-3, 1e-4, warmup_steps=100, total_steps=2000)
    assert cosine(0) == pytest.approx(1e-3 / 101) and cosine(99) == pytest.approx(1e-3 * 100 / 101)
    assert cosine(100) == pytest.approx(1e-3) and cosine(1050) == pytest.approx(5.5e-4)
    assert cosine(2000) == cosine(5000) == pytest.approx(1e-4)
    wsd = LRSchedule(1e-3, 0.0, warmup_steps=10, total_steps=100, kind="wsd", wsd_decay_fraction=0.2)
    assert wsd(50) == wsd(80) == 1e-3 and wsd(90) == pytest.approx(5e-4) and wsd(100) == 0.0


def test_windows_are_a_function_of_the_step_and_split_across_ranks(shakespeare):
    train, _, _ = shakespeare
    windows = TokenWindows.from_arrays([train[:5000], train[5000:9000]], 16)
    one = RandomWindowBatches(windows, 4, grad_accum=2, seed=1)
    ranks = [RandomWindowBatches(windows, 4, grad_accum=1, rank=r, world_size=2, seed=1) for r in range(2)]
    for step in (0, 5):
        assert torch.equal(one.batch(step, 0)[0], ranks[0].batch(step, 0)[0])
        assert torch.equal(one.batch(step, 1)[0], ranks[1].batch(step, 0)[0])
    x, y = one.batch(3, 0)
    assert torch.equal(x[:, 1:], y[:, :-1]) and x.dtype == torch.int64
    assert not torch.equal(one.batch(3, 0)[0], one.batch(4, 0)[0])


def test_replay_mixes_the_earlier_windows_in_at_its_rate_and_leaves_the_rest_alone(shakespeare):
    train, _, _ = shakespeare
    new = TokenWindows.from_arrays([train[:5000]], 16)
    old = TokenWindows.from_arrays([np.full(400, 9999, dtype=train.dtype)], 16)  # a token the new text never has
    plain = RandomWindowBatches(new, 64, grad_accum=1, seed=1)
    none = RandomWindowBatches(new, 64, grad_accum=1, seed=1, replay_windows=old, replay=0.0)
    quarter = RandomWindowBatches(new, 64, grad_accum=1, seed=1, replay_windows=old, replay=0.25)
    assert torch.equal(none.batch(2, 0)[0], plain.batch(2, 0)[0])
    replayed = [(quarter.batch(step, 0)[0] == 9999).all(dim=1) for step in range(20)]
    assert 0.18 < torch.cat(replayed).float().mean().item() < 0.32
    kept = ~replayed[0]
    assert torch.equal(quarter.batch(0, 0)[0][kept], plain.batch(0, 0)[0][kept])
    assert torch.equal(quarter.batch(0, 0)[0], quarter.batch(0, 0)[0])


@pytest.mark.slow
def test_loss_goes_down_on_shakespeare(shakespeare):
    train, val, chars = shakespeare
    evaluator = LMEvaluator(val, 32, 8192, 64, special_ids=[], decode=lambda ids: "".join(chars[i] for i in ids),
                            prompts=[[chars.index(c) for c in "ROMEO:"]], sample_tokens=20)
    trainer = make_trainer(train, 150, evaluate=evaluator)
    before = evaluator(trainer.model.eval(), 0)["val_loss"]
    history = trainer.fit()
    after = history.evals[-1]
    baseline = unigram_entropy(train, 65)
    assert before > 4.0  # about ln(65) untrained
    assert after["val_loss"] < baseline - 0.2, (after, baseline)
    assert after["val_bpb"] == pytest.approx(after["val_loss"] / math.log(2), rel=1e-6)  # 1 byte per ASCII char
    assert history.train[-1]["loss"] < history.train[0]["loss"] - 1.0
    assert len(evaluator.samples[0]["continuation"]) == 20


def test_kill_and_resume_equals_uninterrupted_run(shakespeare, tmp_path):
    train, _, _ = shakespeare
    store = ArtifactStore(str(tmp_path))
    full = make_trainer(train, 12, grad_accum=2)
    full_history = full.fit()

    class Killed(Exception):
        pass

    def kill_at_9(step, total, metrics):
        if step == 9:
            raise Killed

    writer = store.writer(store.ref("pretrain", "resume"))
    first = make_trainer(train, 12, CheckpointStore(writer, keep=1), on_progress=kill_at_9, grad_accum=2,
                         checkpoint_every=4)
    with pytest.raises(Killed):
        first.fit()
    assert CheckpointStore(writer).latest_step() == 8
    assert writer.files("checkpoints/*/state.pt") == ["checkpoints/step-00000008/state.pt"]  # older one removed

    resumed = make_trainer(train, 12, CheckpointStore(writer, keep=1), grad_accum=2, checkpoint_every=4)
    history = resumed.fit()
    assert [r["loss"] for r in history.train] == [r["loss"] for r in full_history.train]
    for (name, a), b in zip(full.model.state_dict().items(), resumed.model.state_dict().values()):
        assert torch.equal(a, b), name
    # a rerun after the end finds the final checkpoint and does nothing more
    again = make_trainer(train, 12, CheckpointStore(writer, keep=1), grad_accum=2)
    assert again.fit().train == history.train and again.step == 12
