"""SGLang's flag reader: `ServerArgs.add_cli_args` on a fresh parser, the parser
`python -m sglang.launch_server` uses.

Run by llmdeploy_cli/flag_snapshot.py inside SGLang's environment (stdlib + SGLang only).
"""

from __future__ import annotations

import argparse
import importlib.machinery
import os
import sys
import types


def stub_modules() -> list[str]:
    """Stand-ins for the modules named in FLAG_SNAPSHOT_STUB (comma-separated), put in place
    before the engine is imported. Only for an import chain that needs a GPU-only build
    which cannot load on the machine taking the snapshot (sglang 0.5.19 imports
    torchvision.io at the top of sglang.srt.utils.common); the parser read is still the
    engine's own. The names go into the JSON as "stubbed"."""
    names = [n.strip() for n in os.environ.get("FLAG_SNAPSHOT_STUB", "").split(",") if n.strip()]
    for name in names:

        def missing(attr: str, _name: str = name):
            if attr.startswith("__"):
                raise AttributeError(attr)

            def call(*args, **kwargs):
                raise RuntimeError(f"{_name}.{attr} is a stub (FLAG_SNAPSHOT_STUB)")

            return call

        mod = types.ModuleType(name)
        mod.__spec__ = importlib.machinery.ModuleSpec(name, None, is_package=True)
        mod.__path__ = []
        mod.__getattr__ = missing  # PEP 562: any attribute is a callable that refuses
        sys.modules[name] = mod
        parent, _, child = name.rpartition(".")
        if parent in sys.modules:
            setattr(sys.modules[parent], child, mod)
    return names


def read(walkers) -> list[dict]:
    stubbed = stub_modules()
    from sglang.srt.server_args import ServerArgs

    parser = argparse.ArgumentParser(prog="sglang.launch_server")
    ServerArgs.add_cli_args(parser)
    cmd = {"command": "python -m sglang.launch_server", "options": walkers.argparse_options(parser)}
    if stubbed:
        cmd["stubbed"] = stubbed
    return [cmd]
