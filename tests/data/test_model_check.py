"""nextok.data.model_check: the model must take the tokenizer's ids and the data's blocks."""

from __future__ import annotations

import pytest

from nextok.data.model_check import check_model_fits


def test_a_model_that_just_fits_passes_and_one_more_is_refused():
    check_model_fits(4096, 256, 4096, 256)  # equal sizes fit
    with pytest.raises(ValueError, match="model.vocab_size=4096"):
        check_model_fits(4097, 256, 4096, 256)
    with pytest.raises(ValueError, match="data.block_size=257"):
        check_model_fits(4096, 257, 4096, 256)


def test_too_small_vocab_names_the_key():
    with pytest.raises(ValueError, match=r"model.vocab_size=300; set model.vocab_size >= 4096"):
        check_model_fits(4096, 128, 300, 256)


def test_too_short_context_names_both_keys():
    with pytest.raises(ValueError, match=r"data.block_size=512 exceeds model.block_size=256"):
        check_model_fits(4096, 512, 4096, 256)
