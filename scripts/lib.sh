# shellcheck shell=bash
# Shared helpers for scripts/test, scripts/demo and .ci/run: sourced, never run.
#
# Sourcing it moves to the repository root, so every caller works from any folder.

PFSYNC_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$PFSYNC_ROOT" || exit 1

VENV="$PFSYNC_ROOT/.venv"
VENV_PY="$VENV/bin/python"
PG_TEST_USER="pfsync-pg"
PG_TEST_DB="pfsync_test"

say() { printf '==> %s\n' "$*"; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
	printf 'error: %s\n' "$*" >&2
	exit 1
}

# Exits through the caller's EXIT trap on every signal that can end a run, so clean-up happens:
# a closed pipe (`scripts/test | head`) or a closed terminal too, not only Ctrl-C.
trap_exit_signals() {
	trap 'exit 129' HUP
	trap 'exit 130' INT
	trap 'exit 141' PIPE
	trap 'exit 143' TERM
}

# Called first in an EXIT trap: a second signal, or output to a closed pipe, must not cut the
# clean-up short (an `exit` from a signal trap would end the shell in the middle of it).
shield_cleanup() {
	set +e
	trap '' HUP INT PIPE TERM
}

is_root() { [[ "$(id -u)" -eq 0 ]]; }

# True when python interpreter $1 runs and is 3.11 or newer.
python_ok() {
	"$1" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' >/dev/null 2>&1
}

# Prints the interpreter to build the venv with: $PYTHON, else python3, else the newest python3.1x.
find_python() {
	local candidate
	for candidate in "${PYTHON:-}" python3 python3.13 python3.12 python3.11; do
		[[ -n "$candidate" ]] || continue
		if command -v "$candidate" >/dev/null 2>&1 && python_ok "$candidate"; then
			command -v "$candidate"
			return 0
		fi
	done
	return 1
}

# Installs Debian packages quietly, running apt-get update once per script run.
APT_UPDATED=""
apt_install() {
	local log
	log="$(mktemp)"
	if [[ -z "$APT_UPDATED" ]]; then
		if ! apt-get update -qq >"$log" 2>&1; then
			tail -n 20 "$log" >&2
			rm -f "$log"
			return 1
		fi
		APT_UPDATED=1
	fi
	if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
		>"$log" 2>&1; then
		tail -n 20 "$log" >&2
		rm -f "$log"
		return 1
	fi
	rm -f "$log"
}

can_apt() { is_root && command -v apt-get >/dev/null 2>&1; }

# Creates .venv if needed and installs the project with the extra $1 ("", "demo" or "test").
#
# A stamp file in .venv holds pyproject.toml's hash, so an unchanged project is not reinstalled.
# The test extra includes everything the base install and the demo extra need, so its stamp
# satisfies all three.
ensure_venv() {
	local extra="${1:-}" spec="." hash stamp_base="$VENV/.pfsync-installed" python log stamp
	local -a satisfied_by
	[[ -n "$extra" ]] && spec=".[$extra]"

	if [[ ! -x "$VENV_PY" ]] || ! python_ok "$VENV_PY"; then
		python="$(find_python)" ||
			die "Python 3.11 or newer is needed to create ${VENV#"$PFSYNC_ROOT"/}, and none was found (tried \$PYTHON, python3, python3.13, python3.12, python3.11)."
		say "creating virtualenv ${VENV#"$PFSYNC_ROOT"/} with $("$python" --version 2>&1)"
		rm -rf "$VENV"
		"$python" -m venv "$VENV" ||
			die "'$python -m venv' failed: on Debian/Ubuntu install the python3-venv package, then run this again."
	fi

	hash="$(sha256sum pyproject.toml | cut -d' ' -f1)"
	satisfied_by=("$stamp_base.test" "$stamp_base${extra:+.$extra}")
	[[ -z "$extra" ]] && satisfied_by+=("$stamp_base.demo")
	for stamp in "${satisfied_by[@]}"; do
		if [[ "$(cat "$stamp" 2>/dev/null)" == "$hash" ]]; then
			return 0
		fi
	done

	say "installing pfsync${extra:+ with its $extra extra} into ${VENV#"$PFSYNC_ROOT"/}"
	rm -f "$stamp_base" "$stamp_base.demo" "$stamp_base.test"
	log="$(mktemp)"
	# Quiet even on success: setuptools prints build warnings that are not ours to act on.
	if ! "$VENV_PY" -m pip install --quiet --disable-pip-version-check --no-input -e "$spec" \
		>"$log" 2>&1; then
		tail -n 40 "$log" >&2
		rm -f "$log"
		die "pip could not install '$spec' into ${VENV#"$PFSYNC_ROOT"/} (the end of its output is above)."
	fi
	rm -f "$log"
	printf '%s\n' "$hash" >"$stamp_base${extra:+.$extra}"
}

# Installs Debian's Chromium and its driver for the browser tests when they are missing and can be.
ensure_browser() {
	[[ -x /usr/bin/chromium && -x /usr/bin/chromedriver ]] && return 0
	if can_apt; then
		say "installing chromium and chromium-driver for the browser tests"
		apt_install chromium chromium-driver && return 0
	fi
	warn "/usr/bin/chromium or /usr/bin/chromedriver is missing and could not be installed (needs root and apt-get): the browser tests will fail."
}

# Prints the newest Python 3.12 or 3.13 that pyenv has installed, if any (no download, ever).
#
# Its interpreters are looked up directly under $(pyenv root)/versions: the python3.13 shim on
# PATH fails unless pyenv selects that version.
find_newest_python() {
	local root candidate newest=""
	root="$(pyenv root 2>/dev/null)" || root="${PYENV_ROOT:-$HOME/.pyenv}"
	for candidate in $(printf '%s\n' "$root"/versions/3.1[23]*/bin/python | sort -V); do
		if [[ -x "$candidate" ]] &&
			"$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 12) else 1)' >/dev/null 2>&1; then
			newest="$candidate"
		fi
	done
	[[ -n "$newest" ]] || return 1
	printf '%s\n' "$newest"
}

# Prints a TCP port on 127.0.0.1 that is free right now.
free_port() {
	"$VENV_PY" -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()'
}

# Prints the folder holding PostgreSQL's server binaries (initdb, pg_ctl), if any.
find_pg_bindir() {
	local found dir
	if found="$(command -v pg_ctl 2>/dev/null)" && [[ -x "$(dirname "$(readlink -f "$found")")/initdb" ]]; then
		dirname "$(readlink -f "$found")"
		return 0
	fi
	# Debian keeps them off PATH, one folder per major version: take the newest.
	for dir in $(printf '%s\n' /usr/lib/postgresql/*/bin | sort -t/ -k4,4nr); do
		if [[ -x "$dir/pg_ctl" && -x "$dir/initdb" ]]; then
			printf '%s\n' "$dir"
			return 0
		fi
	done
	return 1
}

# Installs PostgreSQL from Debian without letting the package create and start its own cluster.
install_postgresql() {
	can_apt || die "PostgreSQL's server binaries (initdb, pg_ctl) were not found, and they cannot be installed here (needs root and apt-get). Install PostgreSQL or set DATABASE_URL."
	say "installing PostgreSQL (apt-get install postgresql)"
	mkdir -p /etc/postgresql-common/createcluster.d
	printf 'create_main_cluster = false\n' >/etc/postgresql-common/createcluster.d/pfsync-no-main-cluster.conf
	apt_install postgresql || die "apt-get could not install postgresql (see above). Install it or set DATABASE_URL."
}

# Runs a command as the cluster's owner: $PG_TEST_USER when root (PostgreSQL refuses root).
as_pg_owner() {
	(
		# The owner may not be allowed into the caller's folder (e.g. under /root).
		cd "${PG_TMPDIR:-/}" 2>/dev/null || cd /
		if is_root; then
			exec runuser -u "$PG_TEST_USER" -- "$@"
		else
			exec "$@"
		fi
	)
}

PG_BINDIR=""
PG_TMPDIR=""
PG_OWNER=""
PG_PORT=""

# Starts a throwaway cluster on 127.0.0.1 and a free port, then exports DATABASE_URL for it.
pg_start() {
	local owner port version attempt
	PG_BINDIR="$(find_pg_bindir)" || {
		install_postgresql
		PG_BINDIR="$(find_pg_bindir)" || die "PostgreSQL was installed but initdb/pg_ctl are still not found under PATH or /usr/lib/postgresql/*/bin."
	}
	version="$("$PG_BINDIR/pg_ctl" --version | sed -E 's/.* ([0-9]+)(\.[0-9]+)?.*/\1/')"

	if is_root; then
		if ! id -u "$PG_TEST_USER" >/dev/null 2>&1; then
			useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin \
				"$PG_TEST_USER" || die "could not create the system user $PG_TEST_USER to run PostgreSQL (it refuses to run as root)."
		fi
		owner="$PG_TEST_USER"
	else
		owner="$(id -un)"
	fi

	# Under /tmp when root: the owner must be able to reach it, and $TMPDIR may be private.
	if is_root; then
		PG_TMPDIR="$(mktemp -d /tmp/pfsync-pg.XXXXXX)"
	else
		PG_TMPDIR="$(mktemp -d "${TMPDIR:-/tmp}/pfsync-pg.XXXXXX")"
	fi
	chmod 700 "$PG_TMPDIR"
	is_root && chown "$PG_TEST_USER:" "$PG_TMPDIR"

	as_pg_owner "$PG_BINDIR/initdb" --pgdata="$PG_TMPDIR/data" --username="$owner" \
		--auth=trust --encoding=UTF8 --locale=C >"$PG_TMPDIR/initdb.log" 2>&1 || {
		cat "$PG_TMPDIR/initdb.log" >&2
		die "initdb failed (its output is above)."
	}
	# Trust, but only over the private socket folder and the loopback address.
	printf '%s\n' 'local all all trust' 'host all all 127.0.0.1/32 trust' >"$PG_TMPDIR/data/pg_hba.conf"
	is_root && chown "$PG_TEST_USER:" "$PG_TMPDIR/data/pg_hba.conf"

	# A free port can be taken between choosing and binding it: try a few.
	for attempt in 1 2 3; do
		port="$(free_port)"
		say "starting PostgreSQL $version on 127.0.0.1:$port (as $owner, data in $PG_TMPDIR)"
		# fsync off: the data is thrown away, and tests run much faster without it.
		if as_pg_owner "$PG_BINDIR/pg_ctl" --pgdata="$PG_TMPDIR/data" --log="$PG_TMPDIR/server.log" \
			--wait --timeout=60 --silent \
			-o "-c listen_addresses=127.0.0.1 -p $port -k $PG_TMPDIR -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
			start >/dev/null 2>&1; then
			break
		fi
		if [[ "$attempt" -eq 3 ]]; then
			tail -n 20 "$PG_TMPDIR/server.log" >&2 || true
			die "PostgreSQL did not start on 127.0.0.1 (its log is above)."
		fi
	done

	PG_OWNER="$owner"
	PG_PORT="$port"
	pg_createdb "$PG_TEST_DB"
	export DATABASE_URL="postgres://$owner@127.0.0.1:$port/$PG_TEST_DB"
}

# Creates database $1 in the throwaway cluster (pg_start first).
pg_createdb() {
	as_pg_owner "$PG_BINDIR/createdb" -h 127.0.0.1 -p "$PG_PORT" -U "$PG_OWNER" "$1" ||
		die "could not create the database $1 in the test cluster."
}

# Prints the PgBouncer binary, if one is installed (Debian puts it in /usr/sbin).
find_pgbouncer() {
	local found
	if found="$(command -v pgbouncer 2>/dev/null)"; then
		printf '%s\n' "$found"
	elif [[ -x /usr/sbin/pgbouncer ]]; then
		printf '%s\n' /usr/sbin/pgbouncer
	else
		return 1
	fi
}

# Installs Debian's PgBouncer; its own service stays unconfigured (our instance is started below).
install_pgbouncer() {
	can_apt || die "PgBouncer was not found, and it cannot be installed here (needs root and apt-get). Install Debian's pgbouncer package: the tests run the writer lock behind it."
	say "installing PgBouncer (apt-get install pgbouncer)"
	apt_install pgbouncer || die "apt-get could not install pgbouncer (see above)."
}

PGB_PORT=""

# Starts PgBouncer in transaction pooling mode on 127.0.0.1 in front of the throwaway cluster,
# as the cluster's owner (PgBouncer refuses to run as root), and exports
# PFSYNC_TEST_PGBOUNCER_PORT for the tests that run pfsync behind it. Needs pg_start first.
pgbouncer_start() {
	local bin owner pg_port attempt
	bin="$(find_pgbouncer)" || {
		install_pgbouncer
		bin="$(find_pgbouncer)" || die "PgBouncer was installed but is still not found on PATH or in /usr/sbin."
	}
	owner="$(id -un)"
	is_root && owner="$PG_TEST_USER"
	pg_port="${DATABASE_URL##*:}"
	pg_port="${pg_port%%/*}"
	# Trust, as the cluster itself does; PgBouncer still wants the user named in its auth file.
	printf '"%s" ""\n' "$owner" >"$PG_TMPDIR/pgbouncer-users.txt"
	for attempt in 1 2 3; do
		PGB_PORT="$(free_port)"
		cat >"$PG_TMPDIR/pgbouncer.ini" <<-INI
			[databases]
			* = host=127.0.0.1 port=$pg_port
			[pgbouncer]
			listen_addr = 127.0.0.1
			listen_port = $PGB_PORT
			unix_socket_dir =
			auth_type = trust
			auth_file = $PG_TMPDIR/pgbouncer-users.txt
			pool_mode = transaction
			default_pool_size = 10
			max_client_conn = 500
			server_idle_timeout = 10
			logfile = $PG_TMPDIR/pgbouncer.log
			pidfile = $PG_TMPDIR/pgbouncer.pid
		INI
		is_root && chown "$PG_TEST_USER:" "$PG_TMPDIR/pgbouncer.ini" "$PG_TMPDIR/pgbouncer-users.txt"
		say "starting PgBouncer ($("$bin" --version | head -n 1 | cut -d' ' -f2)) on 127.0.0.1:$PGB_PORT, transaction pooling"
		if as_pg_owner "$bin" --daemon "$PG_TMPDIR/pgbouncer.ini" >/dev/null 2>&1 &&
			pgbouncer_ready; then
			export PFSYNC_TEST_PGBOUNCER_PORT="$PGB_PORT"
			return 0
		fi
		pgbouncer_stop
	done
	tail -n 20 "$PG_TMPDIR/pgbouncer.log" >&2 || true
	die "PgBouncer did not start on 127.0.0.1 (its log is above)."
}

# True once PgBouncer answers on its port (it daemonizes before it listens): up to 10 s.
pgbouncer_ready() {
	local waited
	for waited in $(seq 1 50); do
		if "$PG_BINDIR/pg_isready" -q -h 127.0.0.1 -p "$PGB_PORT" -d "$PG_TEST_DB" -t 1; then
			return 0
		fi
		[[ "$waited" -lt 50 ]] && sleep 0.2
	done
	return 1
}

# Stops our PgBouncer, if it runs; safe to call twice or after a failed start.
# shellcheck disable=SC2317  # called from the callers' EXIT traps
pgbouncer_stop() {
	local pid waited
	[[ -n "$PG_TMPDIR" && -f "$PG_TMPDIR/pgbouncer.pid" ]] || return 0
	pid="$(head -n 1 "$PG_TMPDIR/pgbouncer.pid" 2>/dev/null || true)"
	if [[ "$pid" =~ ^[0-9]+$ ]] && kill -TERM "$pid" 2>/dev/null; then
		for waited in $(seq 1 25); do
			kill -0 "$pid" 2>/dev/null || break
			[[ "$waited" -lt 25 ]] && sleep 0.2
		done
		kill -KILL "$pid" 2>/dev/null || true
	fi
	rm -f "$PG_TMPDIR/pgbouncer.pid"
}

# Stops the throwaway cluster and removes its folder; safe to call twice or after a failed start.
# shellcheck disable=SC2317  # called from the callers' EXIT traps
pg_stop() {
	local pid
	[[ -n "$PG_TMPDIR" && -d "$PG_TMPDIR" ]] || return 0
	pgbouncer_stop
	if [[ -f "$PG_TMPDIR/data/postmaster.pid" ]]; then
		# Our output may be a closed pipe by now: that must not stop the clean-up.
		say "stopping PostgreSQL" 2>/dev/null || true
		as_pg_owner "$PG_BINDIR/pg_ctl" --pgdata="$PG_TMPDIR/data" --mode=immediate --wait \
			--timeout=30 --silent stop >/dev/null 2>&1 || true
		# pg_ctl may have failed (e.g. interrupted): make sure the postmaster is gone.
		pid="$(head -n 1 "$PG_TMPDIR/data/postmaster.pid" 2>/dev/null || true)"
		if [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
			kill -KILL "$pid" 2>/dev/null || true
		fi
	fi
	rm -rf "$PG_TMPDIR"
	PG_TMPDIR=""
}
