#!/bin/sh
# Entrypoint of the stack's pgAdmin: registers the stack's PostgreSQL (service
# `db`) from config.env's POSTGRES_* variables, then runs pgAdmin's own
# /entrypoint.sh. Nothing here holds a credential: the server definition
# (servers.json) and the password file (pgpass) are written from the
# environment at every start.
#
# - servers.json: pgAdmin imports it once, when its settings database is
#   created (first start on an empty pgadmin-data volume), for the login
#   PGADMIN_DEFAULT_EMAIL.
# - pgpass: written into that login's storage directory, where pgAdmin (in
#   server mode) resolves the passfile "/.pgpass" of the server's connection
#   parameters; so the database opens without a password prompt. Rewritten at
#   every start.
set -eu

: "${POSTGRES_DB:?POSTGRES_DB is not set (config.env)}"
: "${POSTGRES_USER:?POSTGRES_USER is not set (config.env)}"
: "${POSTGRES_PASSWORD:?POSTGRES_PASSWORD is not set (config.env)}"
: "${PGADMIN_DEFAULT_EMAIL:?PGADMIN_DEFAULT_EMAIL is not set (config.env)}"

db_host=${COUNTDOWN_DB_HOST:-db}
db_port=${COUNTDOWN_DB_PORT:-5432}
storage_root=${PGADMIN_STORAGE_DIR:-/var/lib/pgadmin/storage}
servers_json=${PGADMIN_SERVER_JSON_FILE:-/tmp/countdown-servers.json}

case "$POSTGRES_DB$POSTGRES_USER" in
  *'"'* | *\\*)
    echo "register-db: POSTGRES_DB and POSTGRES_USER must not contain \" or \\" >&2
    exit 1
    ;;
esac

# pgAdmin's storage directory of a login: the e-mail with @ as _ and / or \
# as "slash", prefixed with pga_user_ when it starts with a digit.
user_dir=$(printf '%s' "$PGADMIN_DEFAULT_EMAIL" | sed -e 's/@/_/g' -e 's#/#slash#g' -e 's#\\#slash#g')
case "$user_dir" in
  [0-9]*) user_dir="pga_user_$user_dir" ;;
esac
storage="$storage_root/$user_dir"

umask 077
mkdir -p "$storage"
# pgpass: host:port:database:user:password, with \ and : escaped.
password=$(printf '%s' "$POSTGRES_PASSWORD" | sed -e 's/\\/\\\\/g' -e 's/:/\\:/g')
printf '%s:%s:*:%s:%s\n' "$db_host" "$db_port" "$POSTGRES_USER" "$password" > "$storage/.pgpass"
chmod 600 "$storage/.pgpass"

cat > "$servers_json" <<EOF
{
  "Servers": {
    "1": {
      "Name": "countdown",
      "Group": "Servers",
      "Host": "$db_host",
      "Port": $db_port,
      "MaintenanceDB": "$POSTGRES_DB",
      "Username": "$POSTGRES_USER",
      "ConnectionParameters": {
        "sslmode": "prefer",
        "connect_timeout": 10,
        "passfile": "/.pgpass"
      },
      "Comment": "The countdown bot's database (service db of docker-compose.yaml)."
    }
  }
}
EOF
export PGADMIN_SERVER_JSON_FILE="$servers_json"
# libpq's own fallback, should a pgAdmin version ignore PassFile.
export PGPASSFILE="$storage/.pgpass"

exec "${PGADMIN_ENTRYPOINT:-/entrypoint.sh}" "$@"
