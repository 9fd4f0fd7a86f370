#!/bin/sh
# Entrypoint of the stack's pgAdmin: registers the stack's PostgreSQL (service
# `db`) for the superuser POSTGRES_ADMIN_USER, then runs pgAdmin's own
# /entrypoint.sh. Every value comes from the files the setup service wrote
# for pgAdmin alone (docker/setup.sh), mounted at /run/countdown; nothing
# here holds a credential, and none is in the container's environment
# (`docker inspect`): pgAdmin's login is exported to its own process only.
#
#   email, password          pgAdmin's login (PGADMIN_DEFAULT_EMAIL /
#                            PGADMIN_DEFAULT_PASSWORD of config.env)
#   postgres_admin_user, postgres_admin_password, postgres_db
#                            the server registered
#
# - servers.json: pgAdmin imports it once, when its settings database is
#   created (first start on an empty pgadmin-data volume), for the login
#   PGADMIN_DEFAULT_EMAIL.
# - pgpass: written into that login's storage directory, where pgAdmin (in
#   server mode) resolves the passfile "/.pgpass" of the server's connection
#   parameters; so the database opens without a password prompt. Rewritten at
#   every start.
set -eu

secrets=${COUNTDOWN_SECRETS_DIR:-/run/countdown}
read_secret() {
  if [ ! -r "$secrets/$1" ]; then
    echo "register-db: $secrets/$1 is missing: the setup service writes it (docker compose logs setup)" >&2
    exit 1
  fi
  cat "$secrets/$1"
}

db_name=$(read_secret postgres_db)
db_user=$(read_secret postgres_admin_user)
db_password=$(read_secret postgres_admin_password)
PGADMIN_DEFAULT_EMAIL=$(read_secret email)
PGADMIN_DEFAULT_PASSWORD=$(read_secret password)
export PGADMIN_DEFAULT_EMAIL PGADMIN_DEFAULT_PASSWORD

db_host=${COUNTDOWN_DB_HOST:-db}
db_port=${COUNTDOWN_DB_PORT:-5432}
storage_root=${PGADMIN_STORAGE_DIR:-/var/lib/pgadmin/storage}
servers_json=${PGADMIN_SERVER_JSON_FILE:-/tmp/countdown-servers.json}

case "$db_name$db_user" in
  *'"'* | *\\*)
    echo "register-db: POSTGRES_DB and POSTGRES_ADMIN_USER must not contain \" or \\" >&2
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
password=$(printf '%s' "$db_password" | sed -e 's/\\/\\\\/g' -e 's/:/\\:/g')
printf '%s:%s:*:%s:%s\n' "$db_host" "$db_port" "$db_user" "$password" > "$storage/.pgpass"
chmod 600 "$storage/.pgpass"

cat > "$servers_json" <<EOF
{
  "Servers": {
    "1": {
      "Name": "countdown",
      "Group": "Servers",
      "Host": "$db_host",
      "Port": $db_port,
      "MaintenanceDB": "$db_name",
      "Username": "$db_user",
      "ConnectionParameters": {
        "sslmode": "prefer",
        "connect_timeout": 10,
        "passfile": "/.pgpass"
      },
      "Comment": "The countdown bot's database (service db of docker-compose.yaml), as the superuser POSTGRES_ADMIN_USER."
    }
  }
}
EOF
export PGADMIN_SERVER_JSON_FILE="$servers_json"
# libpq's own fallback, should a pgAdmin version ignore PassFile.
export PGPASSFILE="$storage/.pgpass"

exec "${PGADMIN_ENTRYPOINT:-/entrypoint.sh}" "$@"
