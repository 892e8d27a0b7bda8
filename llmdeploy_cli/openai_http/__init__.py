"""OpenAI-compatible HTTP, in one place: what smoke, bench, readiness probes, the backends'
REST actions and the gateway share.

- `wire` (pure, no HTTP library): SSE event parsing over bytes or lines (`SSEDecoder`,
  `sse_data`, `sse_data_lines`, `parse_sse`), JSON (`loads`, `dumps`), the text a chat
  delta or message carries (`delta_parts`, `message_text`), the server's own error text
  whatever shape it came in (`error_text`, `body_error_text`), the ids of a model list
  (`model_ids`), and whether a refusal means "no such model" (`looks_like_model_error`).
- `failures`: one vocabulary for requests that failed below HTTP (`classify`: connect,
  connect_timeout, timeout, disconnected, ...) for both transports, and the one-line
  `UnreachableError` a command shows for it (`unreachable_error`).
- `clients`: the proxy rule (`use_proxy_env`: proxy variables apply to remote URLs, never
  to loopback), `sync_client` (httpx, for the threaded supervisor, readiness, smoke and
  the backends' actions) and `async_session` (aiohttp, for bench and the gateway), with
  `run` to drive a coroutine on the fastest event loop available (uvloop where installed).

Two transports, one vocabulary: httpx is small and synchronous for the supervisor (its
memory is measured in docs/serve.md); aiohttp is the async client chosen by measurement for
bench (docs/benchmarks.md, "HTTP client libraries"). Importing this package, `wire` or
`failures` imports no HTTP library (nor asyncio); `clients` imports one only inside its
factories.
"""
