#!/usr/bin/env bash
# The main job: set everything up, then run the collaborative-decoding demo on the embedded
# default model. Extra arguments go to `fsgen demo` (e.g. --quick, --out DIR).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
. "$ROOT/scripts/setup_env.sh"
cd "$ROOT"
exec fsgen demo "$@"
