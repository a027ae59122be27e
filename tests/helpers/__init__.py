"""Helpers shared by the tests, one module per subject; import as ``from helpers.cli import ok``.

``tests/`` is on ``sys.path`` through pytest's ``pythonpath`` setting (pyproject.toml); a script
that a test starts as its own process puts it there itself.
"""
