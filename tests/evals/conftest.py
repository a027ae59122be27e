"""Make eval_helpers importable (a plain module, not a conftest: folder conftests collide)."""
