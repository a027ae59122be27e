"""Text -> token ids: the BPE and its special tokens (``tokenizer``), and a run's tokenizer,
obtained once and shared by its ranks (``run_tokenizer``). Imports no Lightning: the checkpoint
loader and the HF export use it."""
