"""One rank of a 2-process gloo run of ``evaluate_task`` (launched by test_distributed_scoring)."""

from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist
from tokenizers import Tokenizer

from nextok.evals import evaluate_task, load_task, scoring_options
from nextok.model import ModelConfig, Transformer


def main(model_path: str, tok_path: str, task_file: str, out: str) -> None:
    dist.init_process_group("gloo")
    payload = torch.load(model_path, weights_only=True)
    model = Transformer(ModelConfig.from_dict(payload["config"]))
    model.load_state_dict(payload["state_dict"])
    spec = {
        "data_files": task_file,
        "context": "{q}",
        "choices": "options",
        "gold": "answer",
        "pmi": True,
    }
    examples = load_task("toy", spec)
    res = evaluate_task(
        model,
        Tokenizer.from_file(tok_path),
        examples,
        block_size=64,
        batch_size=2,
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        **scoring_options("toy", spec),
    )
    with open(f"{out}.{dist.get_rank()}", "w") as f:
        json.dump(res.as_dict(), f)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(*sys.argv[1:])
