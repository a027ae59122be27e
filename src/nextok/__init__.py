"""nextok: readable, configurable, scalable training of decoder-only transformer LMs."""

__version__ = "0.1.0"
