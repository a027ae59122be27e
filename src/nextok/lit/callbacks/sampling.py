"""Lightning callback that samples text from the model during/after training and logs it.

Distributed behaviour: sampling happens on global rank 0 only; every rank then meets at
``trainer.strategy.barrier()``, so the other ranks wait instead of racing into the next
collective. Under DDP rank 0 samples with its own replica (``pl_module.model``, called directly,
outside the DDP wrapper, so no gradient hooks fire; an eager copy when its blocks were compiled
in place). Under FSDP2 / tensor parallelism
(``ModelParallelStrategy``: parameters are ``DTensor`` shards) no rank holds the full weights, so
*all* ranks first take part in ``get_model_state_dict(..., full_state_dict=True,
cpu_offload=True)``, which gathers the full state dict onto rank 0's CPU; rank 0 loads it into a
fresh, unsharded :class:`~nextok.model.Transformer`, moves it to its device, samples and drops it.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import CSVLogger, MLFlowLogger, TensorBoardLogger, WandbLogger
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

from nextok.data.prompts import held_out_prompts
from nextok.generation import SamplingParams, encode_prompt, generate_text, make_generator
from nextok.model import Transformer


def _has_dtensor_params(model: nn.Module) -> bool:
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # pragma: no cover - torch without distributed
        return False
    return any(isinstance(p, DTensor) for p in model.parameters())


def unsharded_model(model: nn.Module, is_rank_zero: bool) -> nn.Module | None:
    """The model with full weights on rank 0 (``None`` elsewhere).

    Collective when the parameters are DTensors: every rank must call it.
    """
    model = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    if not _has_dtensor_params(model):
        if not is_rank_zero:
            return None
        if any(getattr(m, "_compiled_call_impl", None) is not None for m in model.modules()):
            # blocks compiled in place for training (module.compile()): sampling through them
            # would trace new graphs for every cache length; an eager copy avoids that
            copy = Transformer(model.config).to(model.lm_head.weight.device)
            copy.load_state_dict(model.state_dict())
            return copy
        return model
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(
        model, options=StateDictOptions(full_state_dict=True, cpu_offload=True)
    )
    if not is_rank_zero:
        return None
    full = Transformer(model.config)
    full.load_state_dict(state)
    return full


class SamplingCallback(pl.Callback):
    """Generate from fixed prompts at train end and/or every ``every_n_steps`` optimizer steps.

    The model must be ``pl_module.model`` (a :class:`~nextok.model.Transformer`); the tokenizer is
    ``pl_module.tokenizer``, else ``trainer.datamodule.tokenizer``. Each prompt gets its own
    generator seeded with ``seed + i``, so samples at different steps use the same random stream
    and are comparable. Samples are printed and logged to TensorBoard (``add_text``), wandb (a
    ``samples`` table), MLflow (a text artifact per step) and CSV (``samples.csv`` in the logger's
    ``log_dir``). ``max_new_tokens`` is reduced to what fits in ``block_size`` (with a warning).
    """

    def __init__(
        self,
        prompts: Sequence[str] | None = None,
        max_new_tokens: int = 64,
        temperature: float = 0.8,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int = 1234,
        every_n_steps: int | None = None,
        on_train_end: bool = True,
        min_p: float | None = None,
        repetition_penalty: float = 1.0,
        stop: Sequence[str] = (),
        num_prompts: int = 3,
        prompt_tokens: int = 8,
    ) -> None:
        super().__init__()
        if every_n_steps is not None and (not isinstance(every_n_steps, int) or every_n_steps <= 0):
            raise ValueError(
                f"callbacks.sampling.every_n_steps must be a positive int or null, got {every_n_steps!r}"
            )
        if isinstance(prompts, str):
            prompts = [prompts]
        # None: the openings of the first num_prompts held-out documents (prompt_tokens tokens)
        self.prompts = None if prompts is None else list(prompts)
        self.num_prompts = num_prompts
        self.prompt_tokens = prompt_tokens
        self.max_new_tokens = max_new_tokens
        self.sampling = SamplingParams(
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            min_p=min_p,
            repetition_penalty=repetition_penalty,
        )
        self.seed = seed
        self.every_n_steps = every_n_steps
        self.sample_on_train_end = on_train_end
        self.stop = list(stop)
        self._last_step: int | None = None
        self.history: list[dict[str, Any]] = []  # rank 0: every sample taken (step, prompt, text)

    # ------------------------------------------------------------------ hooks
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every_n_steps and step > 0 and step % self.every_n_steps == 0:
            self.sample(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        if self.sample_on_train_end:
            self.sample(trainer, pl_module)

    # ------------------------------------------------------------------ sampling
    def _tokenizer(self, trainer, pl_module):
        tok = getattr(pl_module, "tokenizer", None)
        if tok is None and getattr(trainer, "datamodule", None) is not None:
            tok = getattr(trainer.datamodule, "tokenizer", None)
        return tok

    def sample(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> list[str] | None:
        """Sample once for the current step (all ranks call this; rank 0 returns the texts)."""
        step = trainer.global_step
        if step == self._last_step:  # e.g. every_n_steps hit on the very last step
            return None
        self._last_step = step
        tokenizer = self._tokenizer(trainer, pl_module)
        if tokenizer is None:
            rank_zero_warn(
                "SamplingCallback: no tokenizer (neither pl_module.tokenizer nor "
                "trainer.datamodule.tokenizer); skipping samples"
            )
            return None
        model = unsharded_model(pl_module.model, trainer.is_global_zero)
        texts = None
        if trainer.is_global_zero:
            if self.prompts is None:
                self.prompts = held_out_prompts(
                    trainer.datamodule, tokenizer, self.num_prompts, self.prompt_tokens
                ) or [""]  # no held-out documents: start new documents
            texts = self._generate(
                model, tokenizer, pl_module.device, getattr(pl_module, "special_tokens", None)
            )
            if texts is not None:
                self._report(trainer, step, texts)
        trainer.strategy.barrier("nextok_sampling")
        return texts

    def _generate(
        self, model: nn.Module, tokenizer, device: torch.device, special=None
    ) -> list[str] | None:
        model = model.to(device)
        # the run's EOS ends a sample; its BOS (if documents had one) starts every prompt
        tokens = (
            {}
            if special is None
            else {"eos": special.eos, "bos": special.bos if special.add_bos else None}
        )
        longest = max(len(encode_prompt(tokenizer, p, **tokens)) for p in self.prompts)
        room = model.config.block_size - longest
        if room <= 0:
            rank_zero_warn(
                f"SamplingCallback: a prompt of {longest} tokens fills block_size; skipping"
            )
            return None
        if room < self.max_new_tokens:
            rank_zero_warn(
                f"SamplingCallback: max_new_tokens={self.max_new_tokens} does not fit in "
                f"block_size={model.config.block_size} after a {longest}-token prompt; using {room}"
            )
        generators = [make_generator(self.seed + i, device) for i in range(len(self.prompts))]
        return generate_text(
            model,
            tokenizer,
            self.prompts,
            min(room, self.max_new_tokens),
            self.sampling,
            stop=self.stop,
            generator=generators,
            **tokens,
        )

    # ------------------------------------------------------------------ output
    def _report(self, trainer: pl.Trainer, step: int, texts: list[str]) -> None:
        rows = [(step, p, t) for p, t in zip(self.prompts, texts)]
        self.history.extend(dict(step=s, prompt=p, text=t) for s, p, t in rows)
        print(f"\n=== samples at step {step} ===")
        for _, p, t in rows:
            print(f"--- prompt {p!r}\n{p}{t}")
        for logger in trainer.loggers:
            if isinstance(logger, TensorBoardLogger):
                for i, (_, p, t) in enumerate(rows):
                    body = "\n".join(
                        "    " + line for line in (p + t).splitlines()
                    )  # markdown code
                    logger.experiment.add_text(f"samples/{i}", body, global_step=step)
                logger.experiment.flush()
            elif isinstance(logger, WandbLogger):
                logger.log_table(key="samples", columns=["step", "prompt", "sample"], data=rows)
            elif isinstance(logger, MLFlowLogger):
                text = "".join(f"--- prompt {p!r}\n{p}{t}\n" for _, p, t in rows)
                logger.experiment.log_text(logger.run_id, text, f"samples/step_{step:08d}.txt")
            elif isinstance(logger, CSVLogger):
                _append_csv(os.path.join(logger.log_dir, "samples.csv"), rows)


def _append_csv(path: str, rows: list[tuple[int, str, str]]) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    new = not os.path.exists(path)
    with open(path, "a", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        if new:
            writer.writerow(["step", "prompt", "sample"])
        writer.writerows(rows)
