"""Turn a composed Hydra config into a datamodule, module, loggers, callbacks and a Trainer, and fit.

Kept apart from the Hydra entry point (``nextok.cli.train``) so it can be called with any
``DictConfig`` (tests, notebooks). Every object comes from a ``_target_`` node whose keys are
its constructor arguments; this module only adds what needs run-time facts: the vocabulary
(from the tokenizer), gradient accumulation (from the world size), ``max_steps`` from a token
budget, the resume checkpoint and the wandb run id.
"""

from __future__ import annotations

import logging
import math
import os
import re
import uuid
from pathlib import Path
from typing import Any

import lightning as L
from hydra.utils import instantiate
from lightning.fabric.utilities.rank_zero import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

from nextok.distributed.ranks import data_parallel_size
from nextok.io import atomic_write_text
from nextok.lit.callbacks import UnigramBaseline
from nextok.lit.checkpoint_io import AtomicCheckpointIO
from nextok.lit.config_check import check_config
from nextok.lit.console import ModelSummaryWithFlops, ProgressBar, quiet_lightning, tee_console
from nextok.lit.finish import summary, validate_whole_split
from nextok.lit.module import LMModule
from nextok.lit.resume import pair_tokenizer
from nextok.lit.run_dir import RunState, run_dir_session
from nextok.lit.signals import GracefulStop, StopRequested
from nextok.model import ModelConfig

# Secret-looking keys (api_key, hf_token, password, ...); not eos_token, max_new_tokens, tokenizer_path.
SECRET_KEY = re.compile(
    r"(api[_-]?key|^token$|(hf|access|api|auth)[_-]?token|secret|passw|credential|auth)",
    re.IGNORECASE,
)
CHECKPOINT_DIR = "checkpoints"
WANDB_ID_FILE = "wandb_run_id.txt"


def is_rank_zero() -> bool:
    """Rank from the environment (RANK/LOCAL_RANK/SLURM_PROCID), valid before any process group."""
    return rank_zero_only.rank == 0


# ---------------------------------------------------------------------- config helpers
def redact(container: Any) -> Any:
    """Copy of a plain config with values of secret-looking keys replaced (for loggers)."""
    if isinstance(container, dict):
        return {
            k: (
                "<redacted>"
                if SECRET_KEY.search(str(k))
                and v is not None
                and not isinstance(v, dict | list | bool)
                else redact(v)
            )
            for k, v in container.items()
        }
    if isinstance(container, list):
        return [redact(v) for v in container]
    return container


def print_config(cfg: DictConfig) -> None:
    """Print the resolved config as a rich tree (rank 0)."""
    import rich
    from rich.syntax import Syntax
    from rich.tree import Tree

    tree = Tree("[bold]config[/bold]")
    for key, value in cfg.items():
        branch = tree.add(f"[bold cyan]{key}[/bold cyan]")
        if isinstance(value, DictConfig):
            text = OmegaConf.to_yaml(value, resolve=True)
            branch.add(Syntax(text, "yaml", theme="ansi_dark", background_color="default"))
        else:
            branch.add(repr(value))
    rich.print(tree)


def save_config(cfg: DictConfig, run_dir: Path) -> None:
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))


def pad_vocab(n: int, multiple: int | None) -> int:
    if not multiple or multiple <= 1:
        return n
    return multiple * math.ceil(n / multiple)


def resolve_model_config(cfg: DictConfig, tokenizer_vocab: int) -> ModelConfig:
    """The model config with ``vocab_size`` from the tokenizer when it is null (one source of truth)."""
    model = OmegaConf.to_container(cfg.model, resolve=True)
    model.pop("_target_", None)
    vocab = model.get("vocab_size")
    if vocab is None:
        model["vocab_size"] = pad_vocab(tokenizer_vocab, cfg.get("pad_vocab_multiple_of"))
    elif vocab < tokenizer_vocab:
        raise ValueError(
            f"model.vocab_size={vocab} is smaller than the tokenizer's vocabulary "
            f"({tokenizer_vocab}); set model.vocab_size=null to take it from the tokenizer, or "
            f">= {tokenizer_vocab}"
        )
    return ModelConfig.from_dict(model)


def accumulation(cfg: DictConfig, micro_batch: int, block_size: int, world_size: int) -> int:
    """Micro-batches per optimizer step for the configured global batch (sequences or tokens).

    ``world_size`` is the number of data-parallel ranks (tensor-parallel ranks share data)."""
    per_step = micro_batch * world_size
    seqs, tokens = cfg.get("global_batch_size"), cfg.get("global_batch_tokens")
    if seqs is not None and tokens is not None:
        raise ValueError("set only one of global_batch_size (sequences) and global_batch_tokens")
    if tokens is not None:
        if tokens % block_size:
            raise ValueError(
                f"global_batch_tokens={tokens} is not a multiple of the block size ({block_size})"
            )
        seqs = tokens // block_size
    if seqs is None:
        return 1
    if seqs % per_step:
        raise ValueError(
            f"global batch of {seqs} sequences is not divisible by data.batch_size x world size = "
            f"{micro_batch} x {world_size} = {per_step}; adjust global_batch_size/"
            "global_batch_tokens or data.batch_size"
        )
    return seqs // per_step


def find_resume_checkpoint(run_dir: Path) -> Path | None:
    """Newest ``last*.ckpt`` in the run's checkpoint folder, or Lightning's Slurm preemption
    checkpoint ``<run_dir>/hpc_ckpt_N.ckpt`` (written on SIGUSR1 before a requeue) if newer."""
    candidates = sorted(
        [*(run_dir / CHECKPOINT_DIR).glob("last*.ckpt"), *run_dir.glob("hpc_ckpt_*.ckpt")],
        key=lambda p: p.stat().st_mtime,
    )
    return candidates[-1] if candidates else None


def resolve_ckpt_path(cfg: DictConfig, run_dir: Path) -> str | None:
    ckpt_path, resume = cfg.get("ckpt_path"), cfg.get("resume")
    if ckpt_path is not None:
        if not Path(ckpt_path).exists():
            raise FileNotFoundError(f"ckpt_path={ckpt_path} does not exist")
        return str(ckpt_path)
    if resume in (None, False, "none", "never"):
        return None
    if resume != "auto":
        raise ValueError(f"resume must be 'auto' or null, got {resume!r} (use ckpt_path=PATH)")
    found = find_resume_checkpoint(run_dir)
    if is_rank_zero():
        print(
            f"[nextok] resume=auto: {'resuming from ' + str(found) if found else 'no checkpoint in ' + str(run_dir / CHECKPOINT_DIR) + ', starting fresh'}"
        )
    return str(found) if found else None


def wandb_run_id(run_dir: Path) -> str:
    """One wandb run id per run directory, so a resumed run continues the same wandb run."""
    f = run_dir / WANDB_ID_FILE
    if f.exists():
        return f.read_text().strip()
    run_id = uuid.uuid4().hex[:12]
    if is_rank_zero():
        atomic_write_text(f, run_id + "\n")
    return run_id


def build_loggers(cfg: DictConfig, run_dir: Path) -> list:
    loggers = []
    for name, node in (cfg.get("logger") or {}).items():
        if node is None:
            continue
        extra: dict[str, Any] = {}
        target = str(node.get("_target_", ""))
        if "WandbLogger" in target and node.get("id") is None:
            extra = {"id": wandb_run_id(run_dir), "resume": "allow"}
        if "MLFlowLogger" in target and str(node.get("tracking_uri") or "").startswith("file:"):
            # MLflow >= 3.7 refuses its file store unless opted in; a configured file: URI is
            # that opt-in (sqlite:///... or a server URI need nothing).
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        try:
            loggers.append(instantiate(node, **extra))
        except Exception as e:  # noqa: BLE001 - name the logger that failed
            raise RuntimeError(f"could not create logger '{name}': {e}") from e
    return loggers


def build_callbacks(cfg: DictConfig) -> list:
    return [instantiate(node) for node in (cfg.get("callbacks") or {}).values() if node is not None]


def console_callbacks(cfg: DictConfig) -> list:
    """nextok's progress bar and model summary, where the trainer config enables them."""
    out: list = []
    if cfg.trainer.get("enable_progress_bar", True) is not False:
        out.append(ProgressBar())
    if cfg.trainer.get("enable_model_summary", True) is not False:
        out.append(ModelSummaryWithFlops())
    return out


# ---------------------------------------------------------------------- the run
def _one_log_handler() -> None:
    """Lightning adds its own stderr handler to the ``lightning`` logger even when the root logger
    has one (Hydra's console + train.log): every message would print twice."""
    if logging.getLogger().handlers:
        logging.getLogger("lightning").handlers.clear()


def prepare_init_from(cfg: DictConfig, model_keys: list[str], run_dir: Path):
    """Load ``init_from``'s weights and make ``cfg.model`` (and the tokenizer) the source's."""
    from nextok.hf import is_hf_folder
    from nextok.lit.init_from import load_source, write_tokenizer

    if "model" in model_keys:
        raise ValueError(
            "init_from takes the model config from the source; drop the model=... group override"
        )
    overrides = {}
    for key in model_keys:
        value = OmegaConf.select(cfg, key)
        overrides[key[len("model.") :]] = (
            OmegaConf.to_container(value) if isinstance(value, DictConfig) else value
        )
    src = load_source(str(cfg.init_from), overrides)
    with open_dict(cfg):
        for key, value in src.config.to_dict().items():
            cfg.model[key] = value
        if not cfg.data.get("tokenizer_path"):
            if src.tokenizer is None:
                raise ValueError(
                    f"init_from={cfg.init_from} has no tokenizer.json; set data.tokenizer_path"
                )
            hf = is_hf_folder(src.path)
            cfg.data.tokenizer_path = (
                src.path if hf else str(write_tokenizer(src, run_dir / "init_tokenizer"))
            )
    return src


def train(cfg: DictConfig, model_overrides: list[str] | None = None) -> dict[str, float]:
    """Fit a model as ``cfg`` describes; return the final callback metrics.

    ``model_overrides``: the ``model.*`` keys the user set explicitly (checked against
    ``init_from``'s config; the CLI passes Hydra's command-line overrides). Config values and
    the model config are checked before anything is written or trained; the run dir is locked
    for this process (rank 0) and removed again if it was new and the run fails before training
    starts."""
    _one_log_handler()
    quiet_lightning()
    run_dir = Path(cfg.run_dir)
    rank0 = is_rank_zero()
    with run_dir_session(run_dir, rank0) as state:
        check_config(cfg)
        restore = tee_console(run_dir) if rank0 else None
        try:
            return _train(cfg, model_overrides, run_dir, rank0, state)
        finally:
            if restore is not None:
                restore()


def _train(
    cfg: DictConfig, model_overrides: list[str] | None, run_dir: Path, rank0: bool, state: RunState
) -> dict[str, float]:
    init = prepare_init_from(cfg, model_overrides or [], run_dir) if cfg.get("init_from") else None
    if rank0:
        if cfg.get("print_config", False):
            print_config(cfg)
        save_config(cfg, run_dir)
    L.seed_everything(cfg.seed, workers=True)

    # A resumed run uses the tokenizer its weights were trained with (embedded in the checkpoint).
    ckpt_path = resolve_ckpt_path(cfg, run_dir)
    if ckpt_path and rank0 and pair_tokenizer(ckpt_path, run_dir, cfg.data.get("tokenizer_path")):
        print(f"[nextok] using the tokenizer embedded in {ckpt_path}", flush=True)

    # Data first: the tokenizer decides the vocabulary. This is the one place it is prepared:
    # rank 0 loads or trains it and writes the run dir's tokenizer folder, the other ranks wait
    # for that file (no process group exists yet) and load it. Lightning's prepare_data inside
    # fit then finds it there and only fills the token cache (nextok.data.run_tokenizer).
    datamodule = instantiate(cfg.data)
    datamodule.prepare_tokenizer(writer=rank0, save_dir=run_dir)
    special = datamodule.special_tokens
    model_config = resolve_model_config(cfg, datamodule.vocab_size)
    datamodule.validate_model(model_config.vocab_size, model_config.block_size)

    module: LMModule = instantiate(
        cfg.module,
        model_config=model_config,
        optim=instantiate(cfg.optim),
        schedule=instantiate(cfg.schedule),
        seed=cfg.seed,
    )
    module.tokenizer = datamodule.tokenizer
    module.special_tokens = special

    if init is not None:
        module.export_info = {"init_from": init.path, "hf_family": init.hf_family}
        if ckpt_path is None:
            module.init_state, init.state_dict = init.state_dict, {}  # one reference only
        elif rank0:
            print(f"[nextok] init_from ignored: resuming from {ckpt_path}")
    if rank0:
        module.export_info["train_config"] = redact(OmegaConf.to_container(cfg, resolve=True))
    loggers = build_loggers(cfg, run_dir)
    plugins = [AtomicCheckpointIO()] if cfg.get("atomic_checkpoints", True) else []
    graceful = GracefulStop()  # Ctrl-C / SIGTERM: finish the step, save last.ckpt, exit 130/143
    trainer: L.Trainer = instantiate(
        cfg.trainer,
        logger=loggers or False,
        callbacks=[*build_callbacks(cfg), *console_callbacks(cfg), graceful],
        plugins=plugins,
        default_root_dir=str(run_dir),
    )

    micro = int(cfg.data.batch_size)
    dp = data_parallel_size(trainer)
    accum = accumulation(cfg, micro, model_config.block_size, dp)
    trainer.accumulate_grad_batches = accum
    tokens_per_step = micro * int(cfg.data.block_size) * dp * accum
    if cfg.get("max_tokens") is not None:
        trainer.fit_loop.epoch_loop.max_steps = math.ceil(float(cfg.max_tokens) / tokens_per_step)
    if rank0:
        print(
            f"[nextok] run dir: {run_dir}\n[nextok] model: {module.model_config.n_layer} layers, "
            f"d_model {model_config.d_model}, vocab {model_config.vocab_size}, block "
            f"{model_config.block_size}; world size {trainer.world_size} (data parallel {dp}), "
            f"micro-batch {micro}, "
            f"grad accumulation {accum} -> {tokens_per_step} tokens/step; max_steps "
            f"{trainer.max_steps}"
        )
    hparams = redact(OmegaConf.to_container(cfg, resolve=True))
    hparams["resolved"] = {
        "vocab_size": model_config.vocab_size,
        "accumulate_grad_batches": accum,
        "tokens_per_step": tokens_per_step,
        "max_steps": trainer.max_steps,
    }
    for lg in trainer.loggers:
        lg.log_hyperparams(hparams)

    module.val_scope = periodic_val_scope(datamodule)
    state.started = True
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
    if graceful.signum is not None:
        raise StopRequested(graceful.signum, trainer.global_step)
    val_loss = validate_whole_split(trainer, module, datamodule)
    if rank0:
        baseline = next(
            (c.baseline for c in trainer.callbacks if isinstance(c, UnigramBaseline)), None
        )
        for line in summary(trainer, module, val_loss, baseline):
            print(line, flush=True)
    return {
        k: float(v)
        for k, v in trainer.callback_metrics.items()
        if getattr(v, "numel", lambda: 1)() == 1
    }


def periodic_val_scope(datamodule: Any) -> str:
    """How much of the held-out split the periodic validations cover (printed with each)."""
    n = getattr(datamodule, "max_val_batches", None)
    if n is None:
        return "the whole held-out split"
    return f"a fixed subset of the held-out split (its first {n} batches per rank)"
