"""llmctl: one YAML profile in, a served and verified LLM endpoint out."""

__version__ = "0.1.0"
