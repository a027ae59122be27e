"""The LightningModule: next-token cross-entropy on a plain :class:`~nextok.model.Transformer`.

The Transformer is built in ``configure_model`` (not ``__init__``) so that a model-parallel
strategy can build it on the meta device and shard it (FSDP2) before weights are materialised.
"""

from __future__ import annotations

import contextlib
import random
from dataclasses import asdict
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.optim.lr_scheduler import LambdaLR

from nextok.checkpoint import META_KEY
from nextok.distributed.ranks import data_parallel_size
from nextok.lit.loss_guard import NONFINITE_POLICIES, LossGuard, NonFiniteLossError, clear_guard
from nextok.lit.moe_monitor import MoEMonitor
from nextok.lit.muon import MuonConfig
from nextok.lit.optim import (
    AdamWConfig,
    ScheduleConfig,
    build_optimizer,
    make_schedule,
    optim_config,
)
from nextok.metrics import LossTally, summarize, token_byte_lengths
from nextok.model import ModelConfig, Transformer
from nextok.model.loss import LOSS_IMPLS
from nextok.runtime import configure_cuda, describe_attention

COMPILE_MODES = ("blocks", "model")
__all__ = ["COMPILE_MODES", "NONFINITE_POLICIES", "LMModule", "NonFiniteLossError"]


def is_log_step(trainer: L.Trainer) -> bool:
    """True during the training batch whose metrics Lightning writes (``log_every_n_steps``)."""
    return bool(trainer._logger_connector.should_update_logs or trainer.fast_dev_run)


def _as(cls: type, value: Any) -> Any:
    if value is None:
        return cls()
    if isinstance(value, cls):
        return value
    return cls(**dict(value))


class LMModule(L.LightningModule):
    """Language-model training: loss, optimizer, LR schedule, logging and checkpoint metadata.

    Args:
        model_config: the Transformer's :class:`ModelConfig` (or its dict).
        optim: :class:`AdamWConfig` (peak lr, betas, weight decay groups, grad clipping) or
            :class:`~nextok.lit.muon.MuonConfig` (Muon for hidden matrices, AdamW for the rest).
        schedule: :class:`ScheduleConfig` (warm-up then constant / cosine / WSD).
        compile: ``torch.compile`` the model (state-dict keys are unchanged).
        compile_mode: ``blocks`` (each block separately: quick to compile, FSDP-friendly) or
            ``model`` (the whole forward, loss included: fewer launches).
        activation_checkpointing: recompute each block's activations in the backward pass.
        on_nonfinite: what a NaN/inf loss does: ``stop`` (raise, naming the step, at the next
            log step / validation / checkpoint), ``skip`` (drop that optimizer step) or
            ``ignore`` (:mod:`nextok.lit.loss_guard`; no host sync per step).
        loss_impl: the training loss (:mod:`nextok.model.loss`): ``auto`` (Liger's fused kernel on
            CUDA when installed, else ``chunked``), ``chunked`` (never the whole batch's logits)
            or ``plain`` (full fp32 logits).
        loss_chunk_rows: tokens per chunk of the chunked loss (null: sized to the vocabulary).
        tf32: on CUDA, TF32 tensor cores for fp32 matmuls (``float32_matmul_precision=high``).
        compile_backend: ``torch.compile`` backend (``inductor``; ``aot_eager``/``eager`` to debug).
        seed: base seed; the global RNG is re-seeded from (seed, step, rank) before every step,
            so dropout masks do not depend on where a run was resumed.
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
    ) -> None:
        super().__init__()
        self.model_config = _as(ModelConfig, model_config)
        self.optim_config = optim_config(optim)
        self.schedule_config = _as(ScheduleConfig, schedule)
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
        self.tokenizer = None  # tokenizers.Tokenizer, set by the app (saved into checkpoints)
        self.special_tokens = None  # nextok.data.tokenizer.SpecialTokens, set by the app
        # init_from: full (unsharded) weights to start from, loaded in configure_model
        self.init_state: dict[str, torch.Tensor] | None = None
        self.export_info: dict[str, Any] = {}  # e.g. hf_family, init_from, train_config
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
        self.val_scope: str | None = None

    # ------------------------------------------------------------------ model
    def configure_model(self) -> None:
        """Build the Transformer once; then compile / checkpoint / shard it as configured."""
        if self.model is not None:
            return
        # FSDP2Strategy(meta_init=True): build on the meta device; parallelize() materialises
        # each rank's shard only (models larger than one device's memory).
        strategy = self._trainer.strategy if self._trainer is not None else None
        meta = self.device_mesh is not None and getattr(strategy, "meta_init", False)
        with torch.device("meta") if meta else contextlib.nullcontext():
            model = Transformer(self.model_config)
        model.activation_checkpointing = self.activation_checkpointing
        model.loss_impl, model.loss_chunk_rows = self.loss_impl, self.loss_chunk_rows
        if self.init_state is not None and not meta:
            _load_full(model, self.init_state)
        if self.compile_model and self.compile_mode == "blocks":
            for block in model.blocks:
                block.compile(backend=self.compile_backend)
        self.model = model
        if model.moe_layers():
            self.moe = MoEMonitor(model)
        if self.device_mesh is not None:
            from nextok.distributed import parallelize

            out = parallelize(
                self.model, self.device_mesh, **getattr(strategy, "parallelize_kwargs", {})
            )
            if out is not None:
                self.model = out
            if self.init_state is not None and meta:  # each rank keeps its shard of the weights
                from torch.distributed.checkpoint.state_dict import (
                    StateDictOptions,
                    set_model_state_dict,
                )

                set_model_state_dict(
                    self.model,
                    _with_tied(model, self.init_state),
                    options=StateDictOptions(full_state_dict=True),
                )
        self.init_state = None  # free the full copy
        if self.compile_model and self.compile_mode == "model":
            self.model.compile(backend=self.compile_backend)  # in place: same state-dict keys
        if not meta and self.device_mesh is None:
            # Lightning's model summary measures FLOPs on this input (one forward, rank 0 only:
            # under FSDP that forward would need every rank, so no example there).
            self.example_input_array = torch.zeros(
                1, self.model_config.block_size, dtype=torch.long
            )

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None):
        return self.model(idx, targets)

    def flops_per_token(self, seq_len: int) -> float:
        if seq_len not in self._flops_per_token:
            self._flops_per_token[seq_len] = float(self.model.flops_per_token(seq_len))
        return self._flops_per_token[seq_len]

    # ------------------------------------------------------------------ training
    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        # A pure function of (seed, step, rank): resuming anywhere reproduces dropout exactly.
        if self.model_config.dropout > 0:
            torch.manual_seed((self.seed * 1_000_003 + self.global_step) * 1024 + self.global_rank)

    def configure_callbacks(self) -> list[L.Callback]:
        """Swap Lightning's default progress bar for its twin that reads metrics at log steps."""
        from nextok.lit.callbacks import sync_free_progress_bar

        bar = self.trainer.progress_bar_callback if self._trainer is not None else None
        twin = sync_free_progress_bar(bar)
        return [twin] if twin is not None else []

    def on_fit_start(self) -> None:
        if self.device.type == "cuda":
            configure_cuda(tf32=self.tf32)
        if self.global_rank == 0 and self.device.type != "meta":
            line = describe_attention(self.model_config, self.device, self._autocast_dtype())
            print(f"[nextok] {line}", flush=True)

    def _autocast_dtype(self) -> torch.dtype:
        precision = str(self.trainer.precision) if self._trainer is not None else "32-true"
        if precision.startswith("bf16"):
            return torch.bfloat16
        if precision.startswith("16"):
            return torch.float16
        return torch.float32

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int):
        x, y = batch
        _, loss = self.model(x, y)
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
        if self._trainer is not None and self.trainer.world_size > 1:
            reduce = lambda t, op: self.trainer.strategy.reduce(t, reduce_op=op)  # noqa: E731
        report = self.guard.check(reduce)
        if report:
            self.print(report)

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.trainer.optimizers:
            clear_guard(self.trainer.optimizers[0])
        # Reaching max_steps through should_stop makes Lightning validate once more, so every run
        # ends with a validation of its final weights (max_time stops do the same).
        if 0 < self.trainer.max_steps <= self.global_step:
            self.trainer.should_stop = True

    def on_train_end(self) -> None:
        self._sync_point()

    # ------------------------------------------------------------------ validation
    def on_validation_epoch_start(self) -> None:
        self._sync_point()
        names = getattr(self.trainer.datamodule, "val_names", None) if self._trainer else None
        self._val_names = list(names) if names else None
        self._val = LossTally(len(self._val_names or [0]), self.token_bytes(), self.device)

    def token_bytes(self) -> torch.Tensor | None:
        """UTF-8 bytes per token id (for val/bpb), from the run's tokenizer; None without one."""
        if self._token_bytes is None and self.tokenizer is not None:
            self._token_bytes = torch.from_numpy(token_byte_lengths(self.tokenizer))
        return self._token_bytes

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        x, y = batch[0], batch[1]
        _, loss = self.model(x, y)
        self._val.add(dataloader_idx, loss, y)

    def on_validation_epoch_end(self) -> None:
        # one reduction per validation; per-source columns when the data is a mixture
        sums = self.trainer.strategy.reduce(self._val.sums, reduce_op="sum").cpu()
        with_bytes = self._val.token_bytes is not None
        total = summarize(sums.sum(dim=1), with_bytes)
        if not total:
            return
        self._last_val = (
            torch.tensor(total["loss"]),
            self.global_step,
            self.val_scope,
            int(total["tokens"]),
        )
        self.log("val/loss", total["loss"], prog_bar=True, sync_dist=False)
        self.log("val/ppl", total["ppl"], sync_dist=False)
        self.log("val/tokens", total["tokens"], sync_dist=False)  # how much of the split it covered
        if with_bytes:
            self.log("val/bpb", total["bpb"], sync_dist=False)
        for i, name in enumerate(self._val_names or []):
            part = summarize(sums[:, i], with_bytes)
            for key in ("loss", "bpb"):
                if key in part:
                    self.log(f"val/{key}/{name}", part[key], sync_dist=False)
        if self.val_scope and not self.trainer.sanity_checking:
            self.print(
                f"[nextok] step {self.global_step}: val/loss {total['loss']:.4f} on "
                f"{self.val_scope} ({int(total['tokens']):,} tokens)"
            )

    # ------------------------------------------------------------------ optimizer
    def configure_optimizers(self):
        if isinstance(self.optim_config, MuonConfig) and self.device_mesh is not None:
            raise ValueError(
                "optim=muon supports single-device and DDP runs (trainer=cpu, gpu, ddp, ddp_sim), "
                "not FSDP2/tensor parallel (trainer=fsdp, fsdp_cpu): Muon needs whole matrices"
            )
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

    # ------------------------------------------------------------------ checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Add the checkpoint contract's ``nextok`` entry (see :mod:`nextok.checkpoint`)."""
        self._sync_point()  # never save weights poisoned by a non-finite loss (policy stop)
        meta: dict[str, Any] = {
            "model_config": self.model_config.to_dict(),
            "tokens_seen": int(self.tokens_seen),
            "rng": _rng_state(),
        }
        if self.tokenizer is not None:
            meta["tokenizer_json"] = self.tokenizer.to_str()
        if self.special_tokens is not None:
            meta["special_tokens"] = self.special_tokens.to_dict()
        if self._last_val is not None:  # for the exported model card
            loss, step, scope, tokens = self._last_val
            meta.update(val_loss=float(loss), val_step=step, val_scope=scope, val_tokens=tokens)
        meta.update(self.export_info)
        checkpoint[META_KEY] = meta

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        meta = checkpoint.get(META_KEY)
        if meta is None:
            raise ValueError("checkpoint has no 'nextok' entry: not written by nextok-train")
        saved = meta.get("model_config", {})
        if saved:  # through ModelConfig, so keys added since the checkpoint get their defaults
            saved = ModelConfig.from_dict(saved).to_dict()
        if saved and saved != self.model_config.to_dict():
            diff = {
                k: (saved.get(k), v)
                for k, v in self.model_config.to_dict().items()
                if saved.get(k) != v
            }
            raise ValueError(
                "the checkpoint's model config differs from this run's (key: (checkpoint, now)): "
                f"{diff}; resume with the same model.* settings"
            )
        self.tokens_seen = int(meta.get("tokens_seen", 0))
        if "rng" in meta:
            _set_rng_state(meta["rng"])


def _with_tied(model: Transformer, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if model.config.tie_embeddings and "lm_head.weight" not in state:
        return {**state, "lm_head.weight": state["tok_emb.weight"]}
    return state


def _load_full(model: Transformer, state: dict[str, torch.Tensor]) -> None:
    """Copy ``init_from`` weights in; every parameter must be filled, nothing left over."""
    model.load_state_dict(_with_tied(model, state), strict=True)


def _rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": {
            "kind": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(
        (
            n["kind"],
            n["keys"].numpy().astype(np.uint32),
            n["pos"],
            n["has_gauss"],
            n["cached_gaussian"],
        )
    )
    if "cuda" in state and torch.cuda.is_available():
        cuda = state["cuda"]
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
