"""Text-level generation with a real BPE tokenizer: EOS, stop strings, streaming deltas."""

from __future__ import annotations

import pytest

from nextok.generation import EOT, TextStream, generate, generate_text, make_generator


@pytest.fixture
def model(tokenizer, make_model):
    return make_model(vocab_size=tokenizer.get_vocab_size(), block_size=96)


def _gens(n):
    return [make_generator(10 + i) for i in range(n)]


def test_text_equals_decoded_ids_and_streams_concatenate(model, tokenizer):
    prompts = ["def ", "import os\n", "x"]
    deltas = {i: [] for i in range(3)}
    texts = generate_text(
        model,
        tokenizer,
        prompts,
        30,
        eos=None,
        generator=_gens(3),
        on_text=lambda b, d: deltas[b].append(d),
    )
    ids = generate(model, [tokenizer.encode(p).ids for p in prompts], 30, generator=_gens(3))
    assert texts == [tokenizer.decode(row) for row in ids]
    assert ["".join(deltas[i]) for i in range(3)] == texts
    assert all(len(deltas[i]) > 3 for i in range(3))  # streamed in pieces, not at the end


def test_endoftext_is_eos_when_in_vocab(model, tokenizer):
    eot = tokenizer.token_to_id(EOT)
    assert eot is not None
    ids = generate(model, [tokenizer.encode("def ").ids], 40, generator=_gens(1))[0]
    # make the model's own 4th token the EOS: output must stop right before it
    eos_tok = tokenizer.id_to_token(ids[3])
    text = generate_text(model, tokenizer, ["def "], 40, eos=eos_tok, generator=_gens(1))[0]
    assert text == tokenizer.decode(ids[: ids.index(ids[3])])


def test_stop_strings_cut_the_text(model, tokenizer):
    full = generate_text(model, tokenizer, ["class "], 40, eos=None, generator=_gens(1))[0]
    stop = full[10:13]
    assert stop and stop in full
    deltas = []
    text = generate_text(
        model,
        tokenizer,
        ["class "],
        40,
        eos=None,
        stop=["@@never@@", stop],
        generator=_gens(1),
        on_text=lambda b, d: deltas.append(d),
    )[0]
    assert text == full[: full.index(stop)]
    assert "".join(deltas) == text


def test_empty_prompt_starts_from_endoftext(model, tokenizer):
    texts = generate_text(model, tokenizer, [""], 5, eos=None, generator=_gens(1))
    eot = tokenizer.token_to_id(EOT)
    assert texts[0] == tokenizer.decode(generate(model, [[eot]], 5, generator=_gens(1))[0])


class _FakeDecode:
    """Stands in for a tokenizer's decode on hand-made pieces (ids index into PIECES)."""

    PIECES = ["ab", "\ufffd", "é", "c#", "#", "d", "END", "x"]

    def decode(self, ids):
        text = "".join(self.PIECES[i] for i in ids)
        # an incomplete UTF-8 char (piece 1) only decodes once piece 2 completes it
        return text.replace("\ufffdé", "é")


def test_text_stream_holds_back_partial_chars_and_stop_prefixes():
    s = TextStream(_FakeDecode(), stop=["##END"])
    assert s.push([0]) == "ab"
    assert s.push([0, 1]) == ""  # incomplete character held back
    assert s.push([0, 1, 2]) == "é"
    assert s.push([0, 1, 2, 3]) == "c"  # '#' could start '##END'
    assert s.push([0, 1, 2, 3, 4]) == ""  # '##' too
    assert s.push([0, 1, 2, 3, 4, 5]) == "##d"  # not a stop after all
    assert s.push([0, 1, 2, 3, 4, 5, 3, 4, 6, 7]) == "c" and s.stopped
    assert s.text == "abéc##dc" and s.flush() == ""
