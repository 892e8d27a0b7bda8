"""The smoke test: one served endpoint, checked the way a client will use it.

`run_smoke(endpoint, spec)` talks OpenAI-compatible HTTP through llmdeploy_cli.openai_http
(httpx, explicit timeouts, no retries: the OpenAI SDK retries twice by default, which
hides failures), then repeats the chat requests through the `openai` SDK itself (with
`max_retries=0`), and returns a `SmokeReport`. It never prints.

The package, one concern a module: `report` (checks, exchanges, verdict, SmokeFailed),
`transport` (sending, answers turned into errors), `chat` (plain and streamed completion,
expectations), `embed` (embeddings, rerank), `sdk` (the SDK pass), `run` (the order, the
model listing, `first_listed_model`).

What it checks, for a chat endpoint:
1. the model answers under its exact name: GET /v1/models lists it (when the backend lists
   models), and a completion for that name is not refused as "model not found";
2. one non-streaming chat completion returns text, a finish_reason and usage;
3. one streaming chat completion (with `stream_options.include_usage`) returns text, a
   finish_reason and a final usage chunk, in a sane order: role/text chunks, then the
   finish chunk, then `[DONE]`;
4. the profile's expectations (`smoke.expect`): a regex over the answer, JSON that parses;
5. the SDK pass (smoke/sdk.py): the same plain and streamed requests through the `openai`
   SDK; what the SDK rejects fails the smoke with the SDK's own error.

"Text" is content, or reasoning (`reasoning_content` / `reasoning`, what reasoning models
fill when a short answer ends inside the think block), or tool calls; the report says which
field carried it. Usage missing, `[DONE]` missing (transformers serve never sends it) and a
whitespace-only answer are warnings, not failures.

For an embedding endpoint (task `embedding`) it POSTs /v1/embeddings and checks the vector
(and `expect.embedding_dim`); for `rerank` it POSTs /v1/rerank and checks the results.

Generation parameters are sent only where they apply: `max_tokens` and `temperature` from
the spec; temperature 0 is greedy on every engine, so no top_p/top_k are ever sent.

Errors (exit codes as in errors.ExitCode): connection refused or a timeout -> UnreachableError
(5); 401/403 -> AuthError (1) naming the key's environment variable; the model not served
under that name -> AssertionFailed (6) naming the names the server does serve; any other
4xx/5xx -> LlmctlError (1) with the server's own error text; an empty answer, a missing
finish_reason, a broken stream or a failed expectation -> SmokeFailed, an AssertionFailed
(6) that carries the report.
"""

from llmdeploy_cli.smoke.chat import chat_body
from llmdeploy_cli.smoke.report import (
    REPORT_VERSION,
    AuthError,
    Check,
    Exchange,
    SmokeFailed,
    SmokeReport,
)
from llmdeploy_cli.smoke.run import EMBED_TASKS, first_listed_model, run_smoke, smoke_routes

__all__ = [
    "EMBED_TASKS",
    "REPORT_VERSION",
    "AuthError",
    "Check",
    "Exchange",
    "SmokeFailed",
    "SmokeReport",
    "chat_body",
    "first_listed_model",
    "run_smoke",
    "smoke_routes",
]
