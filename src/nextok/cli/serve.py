"""``nextok-serve ckpt=PATH``: an OpenAI-compatible HTTP server (``pip install -e '.[serve]'``).

Loads the checkpoint (or Hugging Face folder) as ``nextok-generate`` does (``quantize=`` too),
starts the engine on a background thread and serves :mod:`nextok.serving.api` with uvicorn.
SIGTERM/Ctrl-C stop accepting connections, let the requests in flight finish, then exit 0.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

from nextok.cli._conf import conf_dir
from nextok.cli.errors import CliError, one_line_errors

API_KEY_ENV = "NEXTOK_API_KEY"
ENGINE_KEYS = (
    "kv_blocks",
    "kv_cache_mb",
    "block_size_tokens",
    "max_tokens_per_step",
    "max_running",
    "prefix_sharing",
)


def chat_template(cfg: DictConfig) -> str | None:
    """``chat_template=FILE``, else the Hugging Face folder's template (None: no chat)."""
    if cfg.chat_template:
        path = Path(str(cfg.chat_template))
        if not path.is_file():
            raise CliError(f"chat_template={path} not found")
        return path.read_text()
    folder = Path(str(cfg.ckpt))
    if not folder.is_dir():
        return None
    if (folder / "chat_template.jinja").is_file():
        return (folder / "chat_template.jinja").read_text()
    config = folder / "tokenizer_config.json"
    if config.is_file():
        template = json.loads(config.read_text()).get("chat_template")
        if isinstance(template, str):
            return template
    return None


def speculation(cfg: DictConfig, loaded, device, dtype, quantize):
    """The engine's proposer from ``draft`` / ``num_speculative_tokens`` /
    ``prompt_lookup_max_ngram``: None, a :class:`~nextok.generation.PromptLookup`, or a
    :class:`~nextok.generation.DraftModel` loaded like ``nextok-generate``'s (the target's
    tokenizer, device, dtype and quantization)."""
    from nextok.cli.draft import make_proposer

    draft = cfg.get("draft")
    if draft is None or str(draft) == "":
        return None
    return make_proposer(cfg, loaded, device, dtype, quantize)


def build(cfg: DictConfig):
    """The :class:`~nextok.serving.api.Served` model (its worker not started yet)."""
    from nextok.checkpoint import load_checkpoint
    from nextok.cli.generate import resolve_device, resolve_dtype
    from nextok.generation.quantize import quantize_model, speed_note
    from nextok.serving import Engine
    from nextok.serving.api import Served
    from nextok.serving.worker import EngineWorker

    if not cfg.ckpt:
        raise CliError("ckpt=PATH is required (a nextok-train .ckpt or a Hugging Face folder)")
    device = resolve_device(cfg.device)
    dtype = resolve_dtype(cfg.dtype, device)
    try:
        loaded = load_checkpoint(cfg.ckpt, device=device, dtype=dtype, block_size=cfg.block_size)
    except (FileNotFoundError, IsADirectoryError, ValueError) as err:
        raise CliError(str(err)) from err
    except Exception as err:  # e.g. not a torch file at all
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CliError(f"cannot load checkpoint {cfg.ckpt}: {first}") from err
    quantize = cfg.get("quantize")
    try:
        quantize_model(loaded.model, quantize, device)
    except ValueError as err:
        raise CliError(str(err)) from err
    note = speed_note(quantize, dtype, device_type=device.type)
    if note:
        print(f"nextok-serve: note: {note}", file=sys.stderr)
    proposer = speculation(cfg, loaded, device, dtype, quantize)
    tok, special = loaded.tokenizer, loaded.special
    try:
        engine = Engine(
            loaded.model,
            tokenizer=tok,
            eos_id=tok.token_to_id(special.eos) if special.eos else None,
            vocab_limit=tok.get_vocab_size(),
            proposer=proposer,
            **{k: cfg[k] for k in ENGINE_KEYS},
        )
    except ValueError as err:
        raise CliError(str(err)) from err
    name = cfg.model_name or Path(str(cfg.ckpt)).name
    return Served(
        worker=EngineWorker(engine),
        tokenizer=tok,
        name=str(name),
        block_size=loaded.model.config.block_size,
        vocab_limit=tok.get_vocab_size(),
        eos=special.eos,
        bos=special.bos if special.add_bos else None,
        chat_template=chat_template(cfg),
        api_key=cfg.api_key or os.environ.get(API_KEY_ENV) or None,
    )


def run(cfg: DictConfig) -> None:
    try:
        import uvicorn

        from nextok.serving.api import build_app
    except ImportError as err:
        raise CliError(
            f"nextok-serve needs the serve extra: pip install -e '.[serve]' ({err})"
        ) from err
    if not isinstance(cfg.port, int) or not 0 <= cfg.port < 65536:
        raise CliError(f"port must be an integer in [0, 65535], got {cfg.port!r}")
    served = build(cfg)
    engine = served.worker.engine
    server = uvicorn.Server(
        uvicorn.Config(build_app(served), host=str(cfg.host), port=cfg.port, log_level="warning")
    )
    served.worker.start()
    auth = "bearer auth on" if served.api_key else "no auth"
    if engine.proposer is not None:
        auth += f"; draft={cfg.draft} k={engine.proposer.num_speculative_tokens}"
    if str(cfg.host) not in ("127.0.0.1", "localhost", "::1") and not served.api_key:
        print(f"nextok-serve: warning: serving {cfg.host} without api_key", file=sys.stderr)
    print(
        f"nextok-serve: {served.name} on http://{cfg.host}:{cfg.port}/v1 ({auth}; KV pool "
        f"{engine.cache.num_blocks} blocks x {engine.cache.block_size} tokens)",
        file=sys.stderr,
        flush=True,
    )
    # uvicorn re-raises the SIGTERM it drained on; once drained, exiting 0 is the right answer
    signal.signal(signal.SIGTERM, lambda *_: None)
    try:
        server.run()  # returns after SIGTERM/SIGINT once the requests in flight are answered
    finally:
        served.worker.stop()
    if engine.proposer is not None:
        from nextok.cli.draft import acceptance_note

        print(f"nextok-serve: {acceptance_note(cfg.draft, engine.proposer)}", file=sys.stderr)
    print("nextok-serve: stopped", file=sys.stderr, flush=True)


@hydra.main(version_base="1.3", config_path=conf_dir(), config_name="serve")
def main(cfg: DictConfig) -> None:
    with one_line_errors("nextok-serve", interrupted="interrupted"):
        run(cfg)


if __name__ == "__main__":
    main()
