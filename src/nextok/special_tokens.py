"""nextok's own special-token literals: one home for every package (the model side included).

A BPE trained by nextok has ``EOT`` at id 0 (and ``PAD`` at id 1 with ``data.add_pad_token``);
``EOT`` separates documents in training and ends generation unless a tokenizer's own
``tokenizer_config.json`` names another EOS (:func:`nextok.data.tokenization.tokenizer.special_tokens`).
"""

EOT = "<|endoftext|>"
PAD = "<|pad|>"
