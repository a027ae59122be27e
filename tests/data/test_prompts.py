"""Sample prompts are the openings of held-out documents."""

from __future__ import annotations

from nextok.data import LMDataModule
from nextok.data.prompts import document_openings, held_out_prompts
from nextok.data.tokenization.tokenizer import train_bpe

DOCS = [f"Document number {i} talks about topic {i * 7} at some length.\n" * 3 for i in range(40)]


def test_openings_of_held_out_documents(tmp_path):
    for i, d in enumerate(DOCS):
        (tmp_path / f"{i:02d}.txt").write_text(d)
    dm = LMDataModule(source="text", data_files=str(tmp_path), val_fraction=0.1, vocab_size=300)
    tok = train_bpe(iter(DOCS), 300)
    _, val = dm.documents()
    prompts = held_out_prompts(dm, tok, n=3, tokens=4)
    assert len(prompts) == 3
    for p, doc in zip(prompts, val["text"]):
        assert doc.startswith(p) and p and len(tok.encode(p).ids) <= 4
    train, _ = dm.documents()
    assert not any(d.startswith(prompts[0]) for d in train["text"] if d not in val["text"])


def test_openings_skip_blank_documents_and_whitespace():
    tok = train_bpe(iter(DOCS), 300)
    out = document_openings(["", "   \n", "\n\n  hello world and more"], tok, n=2, tokens=2)
    assert out == [tok.decode(tok.encode("hello world and more").ids[:2])]
