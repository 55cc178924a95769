"""Entry point of one pretraining process under torchrun: `python -m llm_core.train.pretrain_worker CONTEXT.json`.

The launching stage writes its `StageContext` as JSON (`pretrain.dump_context`); every process reads it and trains
its share; rank 0 writes the outputs into the artifact.
"""

from __future__ import annotations

import logging
import sys

from llm_core.train.pretrain import load_context, pretrain


def main(argv: list[str]) -> None:
    assert len(argv) == 1, "usage: python -m llm_core.train.pretrain_worker CONTEXT.json"
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    with open(argv[0], encoding="utf-8") as f:
        pretrain(load_context(f.read()))


if __name__ == "__main__":
    main(sys.argv[1:])
