"""``nextok-export ckpt=PATH out=DIR``: checkpoint -> publishable Hugging Face folder (weights,
config, generation config, tokenizer files with the run's special tokens, model card)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from nextok.cli._conf import conf_dir
from nextok.cli.errors import CliError, one_line_errors

USAGE = "usage: nextok-export ckpt=PATH out=DIR [dtype=bf16] [max_shard_size=2GB] [overwrite=true]"

# A quantized folder is not written: transformers quantizes full-precision weights at load time.
QUANTIZE_REFUSED = (
    "quantize= is not offered by nextok-export (the folder holds full-precision weights); "
    "quantize at load in transformers: from_pretrained(DIR, "
    "quantization_config=TorchAoConfig(Int8WeightOnlyConfig()))"
)


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="export")
def _main(cfg: DictConfig) -> None:
    from nextok.checkpoint import load_checkpoint
    from nextok.hf import export_hf
    from nextok.hf.folder import check_export_target

    with one_line_errors("nextok-export"):
        for key in ("ckpt", "out"):
            if not cfg.get(key):
                raise CliError(f"{key}= is required; {USAGE}")
        check_export_target(cfg.out, cfg.overwrite)  # before the (slow) load
        loaded = load_checkpoint(
            cfg.ckpt,
            verify=bool(cfg.get("verify", True)),
            eos_token=cfg.data.eos_token,
            add_bos=cfg.data.add_bos,
        )
        meta = loaded.meta
        card = {
            "tokens_seen": meta.get("tokens_seen"),
            "val_loss": meta.get("val_loss"),
            "val_step": meta.get("val_step"),
            "val_scope": meta.get("val_scope"),
            "val_tokens": meta.get("val_tokens"),
            "train_config": meta.get("train_config"),
            "source": meta.get("init_from"),
        }
        try:
            out = export_hf(
                loaded.model,
                cfg.out,
                loaded.tokenizer,
                loaded.special,
                dtype=cfg.dtype,
                max_shard_size=cfg.max_shard_size,
                family=cfg.family or None,
                prefer=meta.get("hf_family"),
                card=card,
                overwrite=cfg.overwrite,
                generation=meta.get("hf_generation"),
            )
        except OSError as err:  # a read-only folder, a full disk
            if isinstance(err, FileNotFoundError | IsADirectoryError):
                raise
            raise CliError(
                f"cannot write the export to {cfg.out}: {err.strerror or err}", 1
            ) from err
    n = loaded.model.num_parameters()
    print(
        f"exported {n / 1e6:.2f}M parameters to {out} (load with transformers' AutoModelForCausalLM)"
    )


def main() -> None:
    if any(a.lstrip("+~").split("=", 1)[0] == "quantize" for a in sys.argv[1:]):
        with one_line_errors("nextok-export"):
            raise CliError(QUANTIZE_REFUSED)
    _main()


if __name__ == "__main__":
    main()
