"""Can the model take this data? Checked at start-up, before anything trains."""

from __future__ import annotations


def check_model_fits(
    tokenizer_vocab: int, data_block_size: int, model_vocab: int, model_block_size: int
) -> None:
    """One-line error when the tokenizer's ids or the data's sequences exceed the model."""
    if tokenizer_vocab > model_vocab:
        raise ValueError(
            f"the tokenizer has {tokenizer_vocab} tokens but model.vocab_size={model_vocab}; set "
            f"model.vocab_size >= {tokenizer_vocab} (or a smaller data.vocab_size)"
        )
    if data_block_size > model_block_size:
        raise ValueError(
            f"data.block_size={data_block_size} exceeds model.block_size={model_block_size}; "
            "the model cannot attend over sequences that long"
        )
