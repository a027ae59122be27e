"""Run by test_sampling_callback_distributed.py as ``python dist_sampling_script.py STRATEGY OUT``.

Two CPU processes (gloo) train a tiny model for 2 steps with lr=0 (weights stay at their seeded
init) and the SamplingCallback sampling every step and at the end. Rank 0 then writes what the
callback sampled and what an unsharded copy of the same seeded model generates.
"""

from __future__ import annotations

import json
import os
import sys

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import CSVLogger
from torch.utils.data import DataLoader, TensorDataset

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # tests/
from helpers.generation import train_tokenizer  # noqa: E402
from nextok.generation import SamplingParams, generate_text, make_generator  # noqa: E402
from nextok.lit.callbacks.sampling import SamplingCallback  # noqa: E402
from nextok.model import ModelConfig, Transformer  # noqa: E402

PROMPTS = ["def ", "import os"]
SAMPLING = dict(temperature=0.9, top_k=40, top_p=0.95)  # the callback's arguments


def seeded_model(vocab: int) -> Transformer:
    torch.manual_seed(0)
    return Transformer(
        ModelConfig(vocab_size=vocab, block_size=32, n_layer=2, n_head=2, d_model=32)
    )


class TinyLM(pl.LightningModule):
    def __init__(self, tokenizer, fsdp: bool):
        super().__init__()
        self.tokenizer, self.fsdp = tokenizer, fsdp
        self.model = seeded_model(tokenizer.get_vocab_size())

    def configure_model(self):
        if self.fsdp:
            from nextok.distributed import parallelize

            parallelize(self.model, self.device_mesh)

    def training_step(self, batch, batch_idx):
        (x,) = batch
        return self.model(x[:, :-1], x[:, 1:])[1]

    def configure_optimizers(self):
        return torch.optim.AdamW(self.model.parameters(), lr=0.0)


def main(strategy_name: str, out: str) -> None:
    tok = train_tokenizer()
    if strategy_name == "fsdp":
        from nextok.lit.strategy import FSDP2Strategy

        strategy = FSDP2Strategy(process_group_backend="gloo", save_distributed_checkpoint=False)
    else:
        from lightning.pytorch.strategies import DDPStrategy

        strategy = DDPStrategy(process_group_backend="gloo")
    cb = SamplingCallback(PROMPTS, max_new_tokens=12, seed=5, every_n_steps=1, **SAMPLING)
    trainer = pl.Trainer(
        accelerator="cpu",
        devices=2,
        strategy=strategy,
        max_steps=2,
        callbacks=[cb],
        logger=CSVLogger(out),
        enable_progress_bar=False,
        enable_checkpointing=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
    )
    data = torch.randint(
        0, tok.get_vocab_size(), (16, 17), generator=torch.Generator().manual_seed(0)
    )
    trainer.fit(TinyLM(tok, strategy_name == "fsdp"), DataLoader(TensorDataset(data), batch_size=4))
    if trainer.is_global_zero:
        reference = generate_text(
            seeded_model(tok.get_vocab_size()),
            tok,
            PROMPTS,
            12,
            SamplingParams(**SAMPLING),
            generator=[make_generator(5 + i) for i in range(2)],
        )
        with open(os.path.join(out, "result.json"), "w") as f:
            json.dump(
                {"history": cb.history, "reference": reference, "world_size": trainer.world_size}, f
            )
    else:
        assert cb.history == []  # only rank 0 samples


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
