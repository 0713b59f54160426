#!/usr/bin/env bash
# Start a throwaway PostgreSQL for the tests and print its URL (AIGC_TEST_DATABASE_URL).
# Installs Debian's postgresql (and pgvector) when missing; the cluster lives in a temp dir and
# listens on 127.0.0.1 only. Usage: export AIGC_TEST_DATABASE_URL=$(.ci/postgres.sh)
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  (apt-get update -qq && apt-get install -y -qq postgresql >/dev/null) >&2
fi
if ! ls /usr/share/postgresql/*/extension/vector.control >/dev/null 2>&1; then
  major=$(ls /usr/lib/postgresql | sort -n | tail -1)
  (DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "postgresql-${major}-pgvector" >/dev/null 2>&1 || true) >&2
fi
bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
dir=$(mktemp -d /tmp/aigc-pg.XXXXXX)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
run_as=()
if [ "$(id -u)" = 0 ]; then  # postgres refuses to run as root
  id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
  chown postgres "$dir"
  run_as=(runuser -u postgres --)
fi
"${run_as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
"${run_as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$dir/log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=200" start >/dev/null
echo "postgresql+psycopg://postgres@127.0.0.1:${port}/postgres"
