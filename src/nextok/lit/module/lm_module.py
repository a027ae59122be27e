"""The LightningModule: next-token cross-entropy on a plain :class:`~nextok.model.Transformer`.

This file holds the training step, the optimizer and the hyperparameters; the module's other jobs
are mixins beside it: building the Transformer in ``configure_model`` (not ``__init__``, so a
model-parallel strategy can build it on the meta device and shard it before weights are
materialised; :mod:`nextok.lit.module.model_setup`), validation metrics
(:mod:`nextok.lit.module.validation`) and the checkpoint entry (:mod:`nextok.lit.module.checkpoint_hooks`).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import lightning as L
import torch
from torch.optim.lr_scheduler import LambdaLR

from nextok.console import say
from nextok.distributed.ranks import data_parallel_size
from nextok.lit.lightning_private import attached_trainer, is_log_step
from nextok.lit.module.checkpoint_hooks import CheckpointHooks
from nextok.lit.module.loss_guard import (
    NONFINITE_POLICIES,
    LossGuard,
    NonFiniteLossError,
    clear_guard,
)
from nextok.lit.module.model_setup import ModelSetup
from nextok.lit.module.moe_monitor import MoEMonitor
from nextok.lit.module.validation import ValidationHooks
from nextok.metrics import LossTally
from nextok.model import ModelConfig, Transformer, document_ids
from nextok.model.loss import LOSS_IMPLS
from nextok.optim import (
    AdamWConfig,
    MuonConfig,
    ScheduleConfig,
    build_optimizer,
    make_schedule,
    optim_config,
)
from nextok.runtime import configure_cuda, describe_attention

COMPILE_MODES = ("blocks", "model")
__all__ = ["COMPILE_MODES", "NONFINITE_POLICIES", "LMModule", "NonFiniteLossError"]


def _as_config(cls: type, value: Any) -> Any:
    """A config dataclass ``cls`` from None (its defaults), an instance, or its plain dict."""
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    return cls(**dict(value))


class LMModule(ModelSetup, ValidationHooks, CheckpointHooks, L.LightningModule):
    """Language-model training: loss, optimizer, LR schedule, logging and checkpoint metadata.

    Args:
        model_config: the Transformer's :class:`ModelConfig` (or its dict).
        optim: :class:`AdamWConfig` (peak lr, betas, weight decay groups, grad clipping) or
            :class:`~nextok.optim.MuonConfig` (Muon for hidden matrices, AdamW for the rest).
        schedule: :class:`ScheduleConfig` (warm-up then constant / cosine / WSD).
        compile: ``torch.compile`` the model (state-dict keys are unchanged).
        compile_mode: ``blocks`` (each block separately: quick to compile, FSDP-friendly) or
            ``model`` (the whole forward, loss included: fewer launches).
        activation_checkpointing: recompute each block's activations in the backward pass.
        on_nonfinite: what a NaN/inf loss does: ``stop`` (raise, naming the step, at the next
            log step / validation / checkpoint), ``skip`` (drop that optimizer step) or
            ``ignore`` (:mod:`nextok.lit.module.loss_guard`; no host sync per step).
        loss_impl: the training loss (:mod:`nextok.model.loss`): ``auto`` (Liger's fused kernel on
            CUDA when installed, else ``chunked``), ``chunked`` (never the whole batch's logits)
            or ``plain`` (full fp32 logits).
        loss_chunk_rows: tokens per chunk of the chunked loss (null: sized to the vocabulary).
        tf32: on CUDA, TF32 tensor cores for fp32 matmuls (``float32_matmul_precision=high``).
        compile_backend: ``torch.compile`` backend (``inductor``; ``aot_eager``/``eager`` to debug).
        seed: base seed; the global RNG is re-seeded from (seed, step, rank) before every step,
            so dropout masks do not depend on where a run was resumed.

    What the run hands over (keyword-only, not hyperparameters; all saved into checkpoints
    except ``init_state`` and ``val_scope``):
        tokenizer: the run's ``tokenizers.Tokenizer`` (bytes per token for bits/byte).
        special_tokens: its :class:`~nextok.data.tokenization.tokenizer.SpecialTokens`.
        data_config: the run's resolved ``data`` config (secrets redacted): a resume on other
            data is refused, and ``nextok-eval`` rebuilds the held-out split from it.
        export_info: what the exported model card records (``init_from``, ``hf_family``,
            ``hf_generation``, ``train_config``).
        init_state: full (unsharded) weights to start from (``init_from``), loaded in
            ``configure_model`` and then dropped.
        val_scope: what the periodic validations cover, printed with each.
    """

    def __init__(
        self,
        model_config: ModelConfig | dict,
        optim: AdamWConfig | MuonConfig | dict | None = None,
        schedule: ScheduleConfig | dict | None = None,
        compile: bool = False,
        activation_checkpointing: bool = False,
        on_nonfinite: str = "stop",
        seed: int = 0,
        compile_mode: str = "blocks",
        loss_impl: str = "auto",
        loss_chunk_rows: int | None = None,
        tf32: bool = True,
        compile_backend: str = "inductor",
        *,
        tokenizer: Any = None,
        special_tokens: Any = None,
        data_config: dict[str, Any] | None = None,
        export_info: dict[str, Any] | None = None,
        init_state: dict[str, torch.Tensor] | None = None,
        val_scope: str | None = None,
    ) -> None:
        super().__init__()
        self.model_config = _as_config(ModelConfig, model_config)
        self.optim_config = optim_config(optim)
        self.schedule_config = _as_config(ScheduleConfig, schedule)
        if compile_mode not in COMPILE_MODES:
            raise ValueError(
                f"module.compile_mode must be one of {COMPILE_MODES}, got {compile_mode!r}"
            )
        if loss_impl not in LOSS_IMPLS:
            raise ValueError(f"module.loss_impl must be one of {LOSS_IMPLS}, got {loss_impl!r}")
        if loss_chunk_rows is not None and loss_chunk_rows <= 0:
            raise ValueError(
                f"module.loss_chunk_rows must be positive or null, got {loss_chunk_rows}"
            )
        self.guard = LossGuard(on_nonfinite)
        self.compile_model = compile
        self.compile_mode = compile_mode
        self.compile_backend = compile_backend
        self.loss_impl = loss_impl
        self.loss_chunk_rows = loss_chunk_rows
        self.tf32 = tf32
        self.activation_checkpointing = activation_checkpointing
        self.on_nonfinite = on_nonfinite
        self.seed = seed
        # Plain containers only, so checkpoints load with torch.load(weights_only=True).
        self.save_hyperparameters(
            {
                "model_config": self.model_config.to_dict(),
                "optim": {
                    k: list(v) if isinstance(v, tuple) else v
                    for k, v in asdict(self.optim_config).items()
                },
                "schedule": asdict(self.schedule_config),
                "compile": compile,
                "activation_checkpointing": activation_checkpointing,
                "on_nonfinite": on_nonfinite,
                "seed": seed,
                "compile_mode": compile_mode,
                "loss_impl": loss_impl,
                "loss_chunk_rows": loss_chunk_rows,
                "tf32": tf32,
                "compile_backend": compile_backend,
            },
            logger=False,
        )
        self.model: Transformer | None = None
        self.moe: MoEMonitor | None = None  # MoE models: aux losses, routing metrics
        self.tokenizer = tokenizer
        self.special_tokens = special_tokens
        self.init_state = init_state
        self.export_info: dict[str, Any] = dict(export_info or {})
        self.data_config = data_config
        # (loss, step, what it covered, tokens) of the latest validation, for the model card
        self._last_val: tuple[torch.Tensor, int, str | None, int] | None = None
        self.tokens_seen = 0
        self.flops_per_batch: float | None = None  # read by ThroughputMonitor
        self.progress_bar: dict[str, float] = {}  # shown by nextok's progress bars
        self._flops_per_token: dict[int, float] = {}
        self._val: LossTally | None = None
        self._val_names: list[str] | None = None
        self._token_bytes: torch.Tensor | None = None
        # what validation covers, printed with each val/loss ("a fixed subset of ...", set by the app)
        self.val_scope = val_scope
        self._doc_start: int | None = None  # model.doc_mask: the token that opens a document

    # ------------------------------------------------------------------ training
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # A pure function of (seed, step, rank): resuming anywhere reproduces dropout exactly.
        if self.model_config.dropout > 0:
            torch.manual_seed((self.seed * 1_000_003 + self.global_step) * 1024 + self.global_rank)

    def configure_callbacks(self) -> list[L.Callback]:
        """Swap Lightning's default progress bar for its twin that reads metrics at log steps."""
        from nextok.lit.callbacks import sync_free_progress_bar

        bar = self.trainer.progress_bar_callback if attached_trainer(self) is not None else None
        twin = sync_free_progress_bar(bar)
        return [twin] if twin is not None else []

    def on_fit_start(self) -> None:
        if self.device.type == "cuda":
            configure_cuda(tf32=self.tf32)
        if self.device.type != "meta":
            say(describe_attention(self.model_config, self.device, self._autocast_dtype()))

    def _autocast_dtype(self) -> torch.dtype:
        precision = str(self.trainer.precision) if attached_trainer(self) is not None else "32-true"
        if precision.startswith("bf16"):
            return torch.bfloat16
        if precision.startswith("16"):
            return torch.float16
        return torch.float32

    def doc_ids(self, x: torch.Tensor) -> torch.Tensor | None:
        """Document ids of packed blocks ``x`` for ``model.doc_mask`` (None when it is off)."""
        if not self.model_config.doc_mask:
            return None
        if self._doc_start is None:
            if self.tokenizer is None or self.special_tokens is None:
                raise ValueError("model.doc_mask needs the run's tokenizer and special tokens")
            self._doc_start = self.special_tokens.doc_start_id(self.tokenizer)
        return document_ids(x, self._doc_start)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        _, loss = self.model(x, y, doc_ids=self.doc_ids(x))
        ce = loss  # logged as train/loss; the MoE auxiliary losses are logged apart
        if self.moe is not None:
            loss = loss + self.moe.loss(
                self._sum_over_ranks if self.trainer.world_size > 1 else None
            )
        self.guard.add(ce, self.global_step, checked=loss)  # device-side: no host sync
        self.tokens_seen += x.numel() * data_parallel_size(self.trainer)
        self.flops_per_batch = self.flops_per_token(x.shape[1]) * x.numel()
        return loss

    def _sum_over_ranks(self, t: torch.Tensor) -> torch.Tensor:
        return self.trainer.strategy.reduce(t, reduce_op="sum")

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Clip the global gradient norm; guard the update (skip); log at log steps only."""
        params = [p for p in self.model.parameters() if p.grad is not None]
        clip = self.optim_config.grad_clip
        if self.device_mesh is not None:  # FSDP2 (+ tensor parallel: grads on several meshes)
            from nextok.distributed import grad_norm_

            norm = grad_norm_(params, clip)
        elif clip:
            norm = torch.nn.utils.clip_grad_norm_(params, clip)
        else:
            norm = torch.nn.utils.get_total_norm([p.grad for p in params])
        if hasattr(norm, "full_tensor"):  # DTensor (FSDP2)
            norm = norm.full_tensor()
        self.guard.add_grad_norm(norm, self.global_step)  # device-side: no host sync
        skipped_on_host = False
        if self.guard.policy == "skip" and self.guard.bad is not None:
            bad = self.guard.bad
            if self.trainer.world_size > 1:  # every rank must take the same decision
                bad = self.trainer.strategy.reduce(bad.float(), reduce_op="max") > 0
            if self.guard.guard_update(optimizer, bad):
                skipped_on_host = True
                for p in params:
                    p.grad = None  # AdamW leaves parameters without gradients untouched
        moe_metrics = {}
        if self.moe is not None:  # (a step dropped on the device still updates the MoE bias)
            moe_metrics = self.moe.finish_step(update_bias=not skipped_on_host)
        if is_log_step(self.trainer):
            self._sync_point()
            metrics = {
                "train/grad_norm": norm,
                "train/lr": float(optimizer.param_groups[0]["lr"]),
                "train/tokens_seen": float(self.tokens_seen),
            }
            metrics.update(moe_metrics)
            loss = self.guard.step_loss()
            if loss is not None:
                metrics["train/loss"] = loss
            self.log_dict(metrics, on_step=True, on_epoch=False)
            if loss is not None:  # host float for the progress bar (nextok.lit.callbacks)
                self.progress_bar["loss"] = float(loss)
        self.guard.reset_step()

    def _sync_point(self) -> None:
        """Where the host may wait anyway: raise (stop) or report skipped steps (skip)."""
        reduce = None
        if attached_trainer(self) is not None and self.trainer.world_size > 1:
            reduce = lambda t, op: self.trainer.strategy.reduce(t, reduce_op=op)  # noqa: E731
        report = self.guard.check(reduce)
        if report:
            say(report, via=self.print)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.trainer.optimizers:
            clear_guard(self.trainer.optimizers[0])
        # Reaching max_steps through should_stop makes Lightning validate once more, so every run
        # ends with a validation of its final weights (max_time stops do the same).
        if 0 < self.trainer.max_steps <= self.global_step:
            self.trainer.should_stop = True

    def on_train_end(self) -> None:
        self._sync_point()

    # ------------------------------------------------------------------ optimizer
    def configure_optimizers(self):
        optimizer = build_optimizer(self.model, self.optim_config)
        max_steps = self.trainer.max_steps if self.trainer is not None else -1
        schedule = make_schedule(
            self.schedule_config, self.optim_config.lr, max_steps if max_steps > 0 else None
        )
        scheduler = LambdaLR(optimizer, schedule)
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1},
        }
