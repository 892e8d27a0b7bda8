"""Built-in llmctl backend plugins, one module per engine.

Each is registered under the `llmctl.backends` entry-point group in pyproject.toml, the
same way a third-party package registers its own.
"""
