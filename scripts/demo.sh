#!/bin/sh
# The README's first command (`make demo`): serve the tiny CPU model with the transformers
# backend, wait until it really answers, smoke it, show status and logs, stop it.
# Every step relies on llmctl's exit codes (docs/serve.md); set -e stops at the first one.
set -eu
cd "$(dirname "$0")/.."
profile=profiles/demo-cpu.yml

llmctl validate "$profile"
llmctl render "$profile"
# Preflight, spawn, staged readiness (health, then one real completion), smoke; returns
# once ready and leaves the server under a small supervisor process.
llmctl serve "$profile" --detach --timeout 300
trap 'llmctl stop demo-cpu' EXIT
llmctl status demo-cpu
llmctl smoke "$profile"
llmctl logs demo-cpu -n 5
