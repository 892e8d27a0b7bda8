"""echo-engine: a tiny stand-in model server for llmctl's plugin test. It runs no model."""

__version__ = "0.1.0"
