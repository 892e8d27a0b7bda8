"""Engines installed by llmctl in their own virtual environments (`llmctl engine ...`).

catalog: what to install per engine; store: where envs live, manifests, `engine:` refs;
install: the installer (uv or venv + pip). Importing this package imports nothing heavy.
"""
