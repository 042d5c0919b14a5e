#!/usr/bin/env bash
# Container entrypoint: start-up checks, then the scheduler or a one-off manage.py command.
#   (no arguments) | scheduler   run pf_sync daily at PF_SYNC_SCHEDULE (default 00:00) in TZ
#   check                        only the start-up checks
#   pf_sync|pf_check|...         run that manage.py command once (for host cron / Kubernetes)
set -euo pipefail
cd "$(dirname "$0")/.."

startup_checks() {
    # Settings mistakes, an unreachable database or a drifted host schema stop here with
    # one clear sentence instead of failing at midnight.
    python manage.py check --database default --fail-level ERROR
    if [ "${PF_MIGRATE_ON_START:-false}" = "true" ]; then
        python manage.py migrate --noinput
    else
        python manage.py migrate --check --noinput >/dev/null || {
            echo "pfsync: database migrations are pending; run 'manage.py migrate' (or set PF_MIGRATE_ON_START=true)." >&2
            exit 2
        }
    fi
}

command=${1:-scheduler}
case "$command" in
    scheduler)
        shift || true
        startup_checks
        exec python -m pfsync_app.management.scheduler "$@"
        ;;
    check)
        startup_checks
        echo "pfsync: start-up checks passed"
        ;;
    *)
        startup_checks
        exec python manage.py "$@"
        ;;
esac
