"""What every Hugging Face family shares: the :class:`Family` interface, the tensor-row format,
the declarative 1:1 config fields (:class:`Field`, read by both export and import) and the
one-line refusals of config.json fields nextok cannot compute exactly."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from nextok.model import ModelConfig

# (our key, HF keys, how, split sizes): "same" copies, "split" cuts our fused tensor into the HF
# tensors along dim 0 (qkv -> q/k/v, SwiGLU fc -> gate/up), "t" transposes (GPT-2's Conv1D).
# "experts" stacks per-expert HF tensors (each group of len(sizes) cut by sizes) into a 3-D bank;
# "zeros" is a buffer of ours with no HF tensor (it must be zero to export); "zeros_out" an HF
# tensor with no counterpart of ours (written as zeros on export, e.g. Llama's o_proj.bias when
# only q/k/v have biases).
Row = tuple[str, tuple[str, ...], str, tuple[int, ...]]

# config.json keys that do not change what the weights compute (bookkeeping, generation
# defaults, inference caches, initialisation): read and ignored.
GENERIC_KEYS = frozenset(
    """_name_or_path architectures model_type transformers_version dtype torch_dtype use_cache
    initializer_range bos_token_id eos_token_id pad_token_id sep_token_id unk_token_id
    decoder_start_token_id output_attentions output_hidden_states return_dict torchscript
    use_bfloat16 id2label label2id problem_type tokenizer_class prefix task_specific_params
    finetuning_task pruned_heads tf_legacy_loss chunk_size_feed_forward is_decoder
    is_encoder_decoder add_cross_attention cross_attention_hidden_size max_length min_length
    do_sample early_stopping num_beams num_beam_groups diversity_penalty temperature top_k top_p
    typical_p repetition_penalty length_penalty no_repeat_ngram_size encoder_no_repeat_ngram_size
    bad_words_ids num_return_sequences output_scores return_dict_in_generate forced_bos_token_id
    forced_eos_token_id remove_invalid_values exponential_decay_length_penalty suppress_tokens
    begin_suppress_tokens pretraining_tp""".split()
)
# Must hold these values (anything else changes the computation and is refused).
GENERIC_REQUIRED = {"add_cross_attention": False, "is_encoder_decoder": False}


class UnsupportedConfig(ValueError):
    """A config.json field whose value nextok cannot compute exactly."""


def refuse(where: str, key: str, value: Any, why: str) -> UnsupportedConfig:
    """The one-line refusal of ``key=value`` in ``where`` (raise it)."""
    return UnsupportedConfig(f"{where}: {key}={value!r} is not supported: {why}")


def require(c: dict, where: str, *keys: str) -> list:
    """The values of ``keys``; a missing or null one is refused (all of them named at once)."""
    missing = [k for k in keys if c.get(k) is None]
    if missing:
        raise UnsupportedConfig(
            f"{where} lacks {missing} (required for model_type {c.get('model_type')})"
        )
    return [c[k] for k in keys]


def check_generic(c: dict, where: str, handled: set[str]) -> None:
    """Refuse an encoder-decoder config and any key neither generic nor ``handled``."""
    for key, value in GENERIC_REQUIRED.items():
        if c.get(key, value) != value:
            raise refuse(where, key, c[key], "only decoder-only causal LMs are supported")
    unknown = sorted(set(c) - GENERIC_KEYS - handled)
    if unknown:
        raise UnsupportedConfig(
            f"{where}: unknown field(s) {unknown} for model_type {c.get('model_type')!r}; "
            "nextok refuses fields it cannot prove harmless"
        )


def block_size_in(c: dict, key: str, where: str, block_size: int | None) -> int:
    """The context length: the file's ``key``, or the user's shorter ``block_size``."""
    (limit,) = require(c, where, key)
    if block_size is None:
        return int(limit)
    if block_size > limit:
        raise UnsupportedConfig(
            f"{where}: model.block_size={block_size} exceeds {key}={limit} (the longest context the "
            "weights were made for)"
        )
    return int(block_size)


def one_dropout(c: dict, where: str, keys: tuple[str, ...]) -> float:
    """The one rate several dropout fields share (refused when they differ)."""
    values = {float(c.get(k) or 0.0) for k in keys}
    if len(values) > 1:
        raise UnsupportedConfig(
            f"{where}: {', '.join(f'{k}={c.get(k)}' for k in keys)} differ; nextok's model.dropout "
            "applies one rate to all of them (set the same value, or override model.dropout)"
        )
    return values.pop()


REQUIRED: Any = object()  # Field.default: the key must be present and not null


@dataclass(frozen=True)
class Field:
    """One config.json key that is one :class:`ModelConfig` argument, in both directions.

    Export writes ``getattr(cfg, export or ours)`` (``export``: the derived size when ``ours``
    may be null, e.g. ``ffn_dim`` for ``ffn_hidden``). Import passes ``read(value)`` as argument
    ``ours``; a missing key takes ``default`` (``REQUIRED``: missing or null is refused). The
    field that is ``block_size`` is the context limit, which the user may shorten.
    """

    hf: str
    ours: str
    default: Any = REQUIRED
    read: Callable[[Any], Any] | None = None
    export: str | None = None


def fields_out(fields: Sequence[Field], cfg: ModelConfig) -> dict[str, Any]:
    """The config.json entries of ``fields`` for ``cfg``."""
    return {f.hf: getattr(cfg, f.export or f.ours) for f in fields}


def fields_in(
    fields: Sequence[Field], c: dict, where: str, block_size: int | None = None
) -> dict[str, Any]:
    """The ModelConfig arguments of ``fields`` read from config.json ``c``."""
    require(c, where, *(f.hf for f in fields if f.default is REQUIRED and f.ours != "block_size"))
    args: dict[str, Any] = {}
    for f in fields:
        if f.ours == "block_size":
            args["block_size"] = block_size_in(c, f.hf, where, block_size)
            continue
        value = c[f.hf] if f.default is REQUIRED else c.get(f.hf, f.default)
        args[f.ours] = value if f.read is None else f.read(value)
    return args


@dataclass(frozen=True)
class Family:
    """One Hugging Face model family: which configs it can express (``why_not``), its
    ``config.json`` both ways (``config_out``/``config_in``; the 1:1 keys in ``fields``) and its
    tensor names (``rows``)."""

    model_type: str
    architecture: str
    prefix: str  # of the decoder's tensors, absent when saved from the base model class

    def fields(self) -> tuple[Field, ...]:
        """The config.json keys that are one ModelConfig argument each (both directions)."""
        return ()

    def why_not(self, cfg: ModelConfig) -> str | None:  # pragma: no cover - abstract
        raise NotImplementedError

    def config_out(self, cfg: ModelConfig) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def config_in(
        self, c: dict, where: str, block_size: int | None = None, dropout: float | None = None
    ) -> ModelConfig:
        """``block_size`` may shorten the context; ``dropout`` (the user's ``model.dropout``, or
        0 for inference) replaces the file's training-only dropout fields."""
        raise NotImplementedError  # pragma: no cover - abstract

    def rows(self, cfg: ModelConfig) -> list[Row]:  # pragma: no cover - abstract
        raise NotImplementedError

    def ignorable(self, name: str) -> bool:
        """Stored buffers that carry no learned value (checked by the loader)."""
        return False
