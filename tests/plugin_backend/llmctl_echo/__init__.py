"""llmctl backend plugin for echo-engine (tests/plugin_backend/echo_engine_src)."""
