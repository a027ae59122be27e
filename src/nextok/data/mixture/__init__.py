"""Weighted mixtures of sources: the deterministic schedule (``schedule``), its streaming form
(``stream``) and the Lightning data module that mixes (``datamodule``)."""
