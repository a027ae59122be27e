"""``model.doc_mask`` in the Lightning module: training and validation pass the packed blocks'
document ids (from the run's tokenizer: a document opens at its EOS separator or BOS)."""

from __future__ import annotations

import torch
from lightning.pytorch import LightningDataModule
from torch.utils.data import DataLoader, TensorDataset

from helpers.generation import train_tokenizer
from helpers.trainer import quiet_trainer
from nextok.data.tokenization.tokenizer import SpecialTokens
from nextok.lit import LMModule
from nextok.model import ModelConfig, document_ids


class PackedData(LightningDataModule):
    """Blocks holding several documents, separated by ``sep``."""

    def __init__(self, sep: int) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(0)
        seq = torch.randint(1, 200, (4, 17), generator=g)
        seq[:, [4, 9, 10]] = sep
        self.data = TensorDataset(seq[:, :-1].contiguous(), seq[:, 1:].contiguous())

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=2)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.data, batch_size=2)


def _module(doc_mask: bool, special: SpecialTokens) -> LMModule:
    torch.manual_seed(0)
    cfg = ModelConfig(vocab_size=300, block_size=16, n_layer=2, n_head=2, d_model=32)
    cfg.doc_mask = doc_mask
    return LMModule(cfg, tokenizer=train_tokenizer(), special_tokens=special)


def test_training_and_validation_pass_document_ids(tmp_path):
    special = SpecialTokens(eos="<|endoftext|>")
    sep = special.eos_id(train_tokenizer())
    data = PackedData(sep)
    seen = []
    module = _module(True, special)
    module.configure_model()
    with torch.no_grad():  # O(1) weights: the output depends on the whole context
        for name, p in module.model.named_parameters():
            p.copy_((1.0 if "norm" in name else 0.0) + 0.4 * torch.randn_like(p))
    forward = module.model.forward

    def spy(*args, **kwargs):
        seen.append(kwargs.get("doc_ids"))
        return forward(*args, **kwargs)

    module.model.forward = spy
    quiet_trainer(tmp_path, max_steps=1, limit_val_batches=0).fit(module, datamodule=data)
    x = data.data.tensors[0][:2]
    assert torch.equal(seen[0], document_ids(x, sep)) and seen[0].max() == 3

    # validation: the whole split's loss with the mask, which differs from the unmasked one
    module.model.forward = forward
    masked = quiet_trainer(tmp_path, limit_val_batches=1.0).validate(
        module, datamodule=data, verbose=False
    )[0]
    module.model_config.doc_mask = False
    plain = quiet_trainer(tmp_path, limit_val_batches=1.0).validate(
        module, datamodule=data, verbose=False
    )[0]
    xs, ys = data.data.tensors
    with torch.no_grad():
        want = module.model(xs, ys, doc_ids=document_ids(xs, sep))[1].item()
    assert abs(masked["val/loss"] - want) < 1e-5 and abs(plain["val/loss"] - want) > 1e-2


def test_a_document_opens_at_the_bos_when_one_is_prepended():
    tok = train_tokenizer()
    eos = SpecialTokens(eos="<|endoftext|>")
    assert eos.doc_start_id(tok) == eos.eos_id(tok)
    bos = SpecialTokens(eos="<|endoftext|>", bos="def", add_bos=True)
    assert bos.doc_start_id(tok) == tok.token_to_id("def") != eos.eos_id(tok)
