#!/usr/bin/env bash
# Collect the admin's static files into STATIC_ROOT (no database needed).
set -euo pipefail
cd "$(dirname "$0")/.."
python manage.py collectstatic --noinput --verbosity 0
echo "static files collected in ${STATIC_ROOT:-staticfiles}"
