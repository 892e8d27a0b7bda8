"""Ollama: `ollama serve`, then the model is pulled or created and preloaded (Ollama 0.32).

Facts this relies on, read in Ollama v0.32.15 (source and docs) and ollama-python 0.6:
- envconfig/config.go: the server is configured by environment only. OLLAMA_HOST
  (default 127.0.0.1:11434), OLLAMA_MODELS, OLLAMA_CONTEXT_LENGTH (default context for
  every model), OLLAMA_KEEP_ALIVE (Go duration or integer seconds, negative = forever),
  OLLAMA_NUM_PARALLEL (default 1), OLLAMA_MAX_LOADED_MODELS, OLLAMA_MAX_QUEUE (512),
  OLLAMA_FLASH_ATTENTION (bool), OLLAMA_KV_CACHE_TYPE, OLLAMA_ORIGINS (comma list),
  OLLAMA_NO_CLOUD. There is no API key setting: Ollama does not check keys.
- docs/faq.mdx and fs/ggml/ggml.go SupportsKVCacheType: K/V cache types f16 (default),
  q8_0, q4_0; a quantized cache needs flash attention.
- cmd/cmd.go: `ollama serve` takes no arguments (cobra.ExactArgs(0)); `ollama pull NAME`;
  `ollama create NAME -f Modelfile [-q QUANT]`; `ollama run --keepalive D NAME ""`.
- parser/parser.go + docs/modelfile.mdx: FROM (a GGUF file, a directory of *.gguf, or a
  model name), PARAMETER, TEMPLATE (Go template), SYSTEM; `\"\"\"` quotes multi-line
  values. `ollama create` uploads each file as a blob (POST /api/blobs/sha256:...) and
  sends /api/create {"model", "files": {basename: digest} | "from", "parameters", ...}.
- api/types.go Options/Runner: the PARAMETER names and their types (PARAMETERS below).
- docs/api.md "Model names": the tag defaults to `latest`; /api/tags and /v1/models
  (openai.ToListCompletion) list `name:tag`, so requests must say `name:latest`.
- server/routes.go: GET / answers "Ollama is running"; an unknown model is 404
  {"error": "model 'x' not found"}; a failed pull streams {"error": "pull model
  manifest: file does not exist"}. docs/faq.mdx: POST /api/generate {"model": M}
  loads M (preload); `keep_alive` overrides OLLAMA_KEEP_ALIVE.
- The OpenAI-compatible API cannot set num_ctx: the context length of the served model is
  a Modelfile `PARAMETER num_ctx` (or the server-wide OLLAMA_CONTEXT_LENGTH).
- ollama-python `_client.py`: create(model, quantize, from_, files, template, license,
  system, parameters, messages, stream) since 0.4.6; pull(model, stream=True) yields
  ProgressResponse(status, digest, total, completed); errors raise ResponseError(error,
  status_code), a refused connection raises ConnectionError.
"""

from llmctl_backends.ollama.backend import OllamaBackend
from llmctl_backends.ollama.model import (
    ModelSpec,
    OllamaOptions,
    model_spec,
    modelfile_text,
    tagged,
)

__all__ = ["OllamaBackend", "OllamaOptions", "ModelSpec", "model_spec", "modelfile_text", "tagged"]
