#!/bin/sh
# The README's first command: serve the tiny CPU model, smoke it, stop it.
set -eu
profile=profiles/demo-cpu.yml
llmctl validate "$profile"
llmctl render "$profile"
llmctl serve "$profile" --detach
trap 'llmctl stop demo-cpu' EXIT
llmctl status demo-cpu
llmctl smoke "$profile"
