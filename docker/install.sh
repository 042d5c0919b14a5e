#!/usr/bin/env bash
# Build stage: install pfsync and the host project into a virtual environment.
# Usage: docker/install.sh VENV_DIR [SOURCE_DIR]
set -euo pipefail
venv=${1:?usage: docker/install.sh VENV_DIR [SOURCE_DIR]}
src=${2:-$(cd "$(dirname "$0")/.." && pwd)}
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --no-cache-dir --upgrade pip
"$venv/bin/pip" install --quiet --no-cache-dir "${src}[docker]"
"$venv/bin/python" -c "import pfsync_app, apscheduler; print('pfsync', pfsync_app.__version__, 'installed in', '$venv')"
