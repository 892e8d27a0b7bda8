"""Run llama.cpp's own C++ HTTP server in-process through the `xllamacpp` wheel.

`python llamacpp_runner.py --model X.gguf --host H --port P ...` takes the same long flags
llama-server does (the subset llmctl renders: see FLAGS below), so one profile renders one
argv for either runtime. The process is an ordinary child: llmctl supervises, logs and
stops it like any engine.

Facts this relies on (xorbitsai/xllamacpp, src/xllamacpp/server.cpp and xllamacpp.pyx):
- `xllamacpp.Server(CommonParams)` starts llama.cpp's HTTP server, *then* loads the model,
  and returns once it is loaded; meanwhile `GET /health` answers 503 "Loading model",
  exactly as llama-server does. A failed load raises RuntimeError.
- after loading, the server installs its own SIGINT/SIGTERM handler, which stops the
  server loop but cannot end this Python process; the runner re-installs Python handlers
  and, on a signal, destroys the Server (its destructor stops and joins the loop).
- `CommonParams` mirrors llama.cpp's `common_params`: `model.path`, `model_alias` (a set),
  `hostnames` (a list; `hostname` in older wheels), `port`, `n_ctx`, `n_parallel`,
  `n_gpu_layers` (-1 auto, <= -2 all), `n_batch`, `n_ubatch`, `cpuparams.n_threads`,
  `cache_type_k/v` (ggml_type), `flash_attn_type`, `embedding`, `pooling_type`,
  `chat_template`, `use_jinja`, `endpoint_metrics`, `api_keys`, `n_threads_http`,
  `fit_params`, `ui` (`webui` in older wheels).
- the API key comes from LLAMA_API_KEY, the variable llama-server reads (never argv).

This file imports only the standard library and xllamacpp: it runs in any environment that
has the wheel, with or without llmctl installed there.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys

CACHE_TYPES = ("f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1")
POOLING = ("none", "mean", "cls", "last", "rank")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="llamacpp_runner",
        description="llama.cpp's HTTP server through xllamacpp (llama-server's flags, a subset)",
        allow_abbrev=False,
    )
    p.add_argument("--model", "-m", required=True, help="GGUF file")
    p.add_argument("--alias", "-a", help="model names for the API, comma-separated")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--ctx-size", "-c", type=int, help="context size (0: the model's)")
    p.add_argument("--n-gpu-layers", "-ngl", help="layers in VRAM: a number, auto or all")
    p.add_argument("--parallel", "-np", type=int, help="server slots")
    p.add_argument("--threads", "-t", type=int)
    p.add_argument("--threads-batch", "-tb", type=int)
    p.add_argument("--threads-http", type=int)
    p.add_argument("--batch-size", "-b", type=int)
    p.add_argument("--ubatch-size", "-ub", type=int)
    p.add_argument("--cache-type-k", "-ctk", choices=CACHE_TYPES)
    p.add_argument("--cache-type-v", "-ctv", choices=CACHE_TYPES)
    p.add_argument("--flash-attn", "-fa", choices=("on", "off", "auto"))
    p.add_argument("--fit", choices=("on", "off"))
    p.add_argument("--embedding", "--embeddings", action="store_true")
    p.add_argument("--rerank", "--reranking", action="store_true")
    p.add_argument("--pooling", choices=POOLING)
    p.add_argument("--chat-template-file")
    p.add_argument("--jinja", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--metrics", action="store_true")
    p.add_argument("--no-webui", action="store_true")
    return p


def _set(obj, names: tuple[str, ...], value) -> None:
    """Set the first attribute of `names` the installed wheel has (names moved between
    releases: hostname -> hostnames, webui -> ui)."""
    for name in names:
        if hasattr(obj, name):
            setattr(obj, name, value)
            return
    raise SystemExit(f"llamacpp_runner: this xllamacpp has none of {', '.join(names)}")


def params_from_args(args, environ=os.environ):
    import xllamacpp as xlc

    p = xlc.CommonParams()
    p.model.path = args.model
    if args.alias:
        p.model_alias = {a for a in args.alias.split(",") if a}
    if hasattr(p, "hostnames"):
        p.hostnames = [h for h in args.host.split(",") if h]
    else:
        p.hostname = args.host
    p.port = args.port
    if args.ctx_size is not None:
        p.n_ctx = args.ctx_size
    if args.n_gpu_layers is not None:
        ngl = {"auto": -1, "all": -2}.get(args.n_gpu_layers)
        p.n_gpu_layers = int(args.n_gpu_layers) if ngl is None else ngl
    if args.parallel is not None:
        p.n_parallel = args.parallel
    if args.threads is not None:
        p.cpuparams.n_threads = args.threads
        if args.threads_batch is None:
            p.cpuparams_batch.n_threads = args.threads
    if args.threads_batch is not None:
        p.cpuparams_batch.n_threads = args.threads_batch
    if args.threads_http is not None:
        p.n_threads_http = args.threads_http
    if args.batch_size is not None:
        p.n_batch = args.batch_size
    if args.ubatch_size is not None:
        p.n_ubatch = args.ubatch_size
    for flag, attr in ((args.cache_type_k, "cache_type_k"), (args.cache_type_v, "cache_type_v")):
        if flag is not None:
            setattr(p, attr, getattr(xlc.ggml_type, "GGML_TYPE_" + flag.upper()))
    if args.flash_attn is not None:
        kind = {"on": "ENABLED", "off": "DISABLED", "auto": "AUTO"}[args.flash_attn]
        p.flash_attn_type = getattr(xlc.llama_flash_attn_type, "LLAMA_FLASH_ATTN_TYPE_" + kind)
    if args.fit is not None:
        p.fit_params = args.fit == "on"
    if args.embedding:
        p.embedding = True
    if args.rerank:
        # llama-server's --rerank: embeddings with rank pooling
        p.embedding = True
        p.pooling_type = xlc.llama_pooling_type.LLAMA_POOLING_TYPE_RANK
    if args.pooling is not None:
        p.pooling_type = getattr(
            xlc.llama_pooling_type, "LLAMA_POOLING_TYPE_" + args.pooling.upper()
        )
    if args.chat_template_file:
        with open(args.chat_template_file, encoding="utf-8") as f:
            p.chat_template = f.read()
    if args.jinja is not None:
        p.use_jinja = args.jinja
    if args.metrics:
        p.endpoint_metrics = True
    if args.no_webui:
        _set(p, ("ui", "webui"), False)
    keys = [k for k in environ.get("LLAMA_API_KEY", "").split(",") if k]
    if keys:
        p.api_keys = keys
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        import xllamacpp as xlc
    except ImportError:
        print(
            "llamacpp_runner: the xllamacpp package is not installed in this Python "
            f"({sys.executable}); pip install xllamacpp",
            file=sys.stderr,
        )
        return 3

    params = params_from_args(args)
    stopping: list[int] = []
    # The C signal handler writes to this pipe (set_wakeup_fd) and the main loop select()s
    # on it: unlike `while not stopping: signal.pause()`, a signal that lands between the
    # check and the wait cannot be missed.
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)

    def on_signal(signum, _frame):
        stopping.append(signum)

    # While loading, a stop signal ends the process at once (nothing to clean up yet).
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        server = xlc.Server(params)  # returns once the model is loaded
    except RuntimeError as e:
        print(f"llamacpp_runner: the server did not start: {e}", file=sys.stderr)
        return 1
    # Take SIGTERM/SIGINT back from the C++ handler (see the module docstring).
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    print(f"llamacpp_runner: serving on {server.listening_address}", file=sys.stderr, flush=True)
    while not stopping:
        select.select([wake_r], [], [])
    print(f"llamacpp_runner: signal {stopping[0]}, stopping", file=sys.stderr, flush=True)
    del server  # the destructor stops the server loop and joins it
    return 0


if __name__ == "__main__":
    sys.exit(main())
