"""vLLM's flag reader: the parser `vllm serve` itself builds (ServeSubcommand.subparser_init).

Run by llmdeploy_cli/flag_snapshot.py inside vLLM's environment (stdlib + vLLM only).
"""

from __future__ import annotations

import os


def read(walkers) -> list[dict]:
    os.environ.setdefault("VLLM_TARGET_DEVICE", "cpu")
    import vllm.platforms as platforms

    # A GPU wheel on a machine without a GPU finds no platform, and some versions build
    # a DeviceConfig while making the parser. The option strings do not depend on the
    # platform, so resolve it to the CPU one (no kernels are loaded).
    plugins = getattr(platforms, "builtin_platform_plugins", None)
    if isinstance(plugins, dict) and "cpu" in plugins:
        plugins["cpu"] = lambda: "vllm.platforms.cpu.CpuPlatform"
        # Older CPU platforms probe a torch helper newer torch builds dropped; it only
        # picks kernels, which introspection never loads.
        import torch

        cpu = getattr(torch._C, "_cpu", None)
        if cpu is not None and not hasattr(cpu, "_is_avx512_supported"):
            cpu._is_avx512_supported = lambda: False
    from vllm.entrypoints.cli.serve import ServeSubcommand

    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:  # before 0.11 it lived in vllm.utils
        from vllm.utils import FlexibleArgumentParser
    root = FlexibleArgumentParser(prog="vllm")
    parser = ServeSubcommand().subparser_init(root.add_subparsers())
    return [{"command": "vllm serve", "options": walkers.argparse_options(parser)}]
