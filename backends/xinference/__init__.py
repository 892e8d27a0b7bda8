"""Xinference: `xinference-local` serves, then one model is launched into it (target 4.1).

Every option below was read from Xinference's own source: the 4.1.0 release
(`xinference/deploy/cmdline.py` `local` and `model_launch`, `xinference/constants.py`,
`xinference/api/restful_api.py` `launch_model`/`list_models`, `xinference/api/routers/`,
`xinference/client/restful/restful_client.py`, `xinference/model/utils.py`), cross-checked
with the xorbitsai/inference repository history (click accepts no abbreviations of long
options, but the exact strings are used anyway):
- server: `xinference-local --host/-H --port/-p --log-level` (host default 127.0.0.1,
  port default 9997, log level default INFO);
- launch: `xinference launch --endpoint/-e --model-name/-n --model-type/-t (LLM)
  --model-engine/-en (required for LLMs) --model-format/-f --size-in-billions/-s
  --quantization/-q --context-length (4.1) --model-uid/-u --replica/-r --n-gpu ("auto",
  "none" = CPU, or a count; the vLLM engine uses it as the tensor-parallel size) --gpu-idx
  --model-path/-mp --enable-thinking --api-key/-ak`; any other `--key value` pair is passed
  to the model unchecked (`allow_extra_args`), so llmctl cannot check those
  (`options.launch_kwargs`). The CLI waits until the model is READY or fails.
- llmctl performs that launch itself through the same REST call the CLI makes
  (`POST /v1/models`, JSON body as `RESTfulClient.launch_model` builds it, waiting for the
  model), so an API key travels in an `Authorization` header and never in a process's
  argv; `render` shows the equivalent `xinference launch` command.
- `/v1/models` lists running models by uid, and requests carry the uid as `model`;
  `/status` answers without auth once the supervisor is up.
- environment: `XINFERENCE_HOME` (default ~/.xinference; also moves the HF and ModelScope
  caches to $XINFERENCE_HOME/huggingface and /modelscope, overriding HF_HOME's hub dir),
  `XINFERENCE_MODEL_SRC` (huggingface, modelscope, openmind_hub, csghub, auto; unset
  guesses from the locale, so llmctl always sets it), `XINFERENCE_AUTH_ADVANCED` (auth on
  by default in 4.x; "0"/"false"/"no" turns it off), `XINFERENCE_TRUST_REMOTE_CODE`
  (off by default; without it model code is only trusted for vetted built-ins).
"""

from llmctl_backends.xinference.backend import XinferenceBackend
from llmctl_backends.xinference.options import XinferenceOptions, size_arg

__all__ = ["XinferenceBackend", "XinferenceOptions", "size_arg"]
