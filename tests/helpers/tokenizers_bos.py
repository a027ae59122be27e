"""A tiny byte-level BPE with BOS/EOS special tokens (and no ``<|endoftext|>``), as the Hugging
Face tests need it: optionally with a template that prepends BOS, as Llama tokenizers do."""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers


def bos_tokenizer(bos: str, eos: str, vocab_size: int, template: bool) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        ["hello world def foo bar"] * 50,
        trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[bos, eos],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    if template:
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", special_tokens=[(bos, tok.token_to_id(bos))]
        )
    return tok
