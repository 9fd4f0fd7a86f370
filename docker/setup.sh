#!/bin/sh
# The stack's `setup` service (docker-compose.yaml): hands each service its
# own credentials from config.env, and nobody else's.
#
# config.env is the one file a self-hoster edits. No service gets it whole:
# this one-shot container (no network but the internal one of the demo,
# below; runs before every other service and exits) reads it, checks what would make a service fail later, and writes
# into one volume per service only the values that service needs, each file
# mode 0400 and owned by the uid that service runs as:
#
#   bot/config.env            the bot's own variables (DISCORD_*, POSTGRES_DB,
#                             POSTGRES_USER, POSTGRES_PASSWORD, limits, logs),
#                             read by the bot from its working directory
#   db/                       postgres_admin_user, postgres_admin_password,
#                             postgres_db, bot_user, bot_password,
#                             monitor_user, monitor_password, grafana_user,
#                             grafana_password (the init script
#                             docker/db-init-roles.sh creates the roles)
#   pgadmin/                  email, password (pgAdmin's login);
#                             postgres_admin_user, postgres_admin_password,
#                             postgres_db (the server it registers)
#   grafana/                  admin_user, admin_password (Grafana's login);
#                             postgres_user, postgres_password, postgres_db
#                             (its PostgreSQL data source: the read-only
#                             role POSTGRES_GRAFANA_USER, read by
#                             grafana/provisioning/datasources/postgres.yml)
#   alertmanager/             discord_webhook_url (empty: no Discord)
#   postgres-exporter/        user, password (the read-only monitoring role)
#
# It runs at every `docker compose up`, so the files follow config.env; a
# running service reads them when it starts (`docker compose up -d
# --force-recreate` after an edit). Database passwords are set in PostgreSQL
# once, on an empty volume (docs/alerts.md, "Roles and secrets").
#
# The demo. When the stack has no token (no config.env, or one whose
# DISCORD_TOKEN is empty) and the demo's fake Discord runs (the service
# fake-discord of the profile demo: `docker compose --profile demo up`),
# this script takes docker/demo.env instead of config.env: the same checks,
# the same files, and the bot talks to the fake, Alertmanager posts to the
# fake's webhook. The fake is found by its name on the internal network
# `demo`, the one network of this container, shared with the fake alone.
# Compose cannot make this service wait for a service of a profile that
# may be off, and both start at once, so it looks for the fake for up to
# SETUP_DEMO_WAIT seconds, and only when there is no token: a configured
# stack starts at once.
#   The volumes remember which configuration filled them (db/stack_mode):
# a real start on the demo's volumes, or the demo on a real stack's, is
# refused in one line, as either would meet passwords it did not set.
#
# Fails (exit 1, one line per problem) on what would make a service fail or
# restart forever: no config.env or an empty DISCORD_TOKEN outside the
# demo, an empty password, an e-mail address pgAdmin refuses, a role or
# database name that is not a plain identifier, a `$` in
# POSTGRES_GRAFANA_PASSWORD (Grafana's provisioning would expand it), the
# demo's volumes under a real configuration or the other way round.
#
# Environment (set by docker-compose.yaml; the defaults are the images' uids):
#   SETUP_CONFIG        config.env (/countdown/project/config.env: the
#                       project's directory is mounted, not the file, which
#                       may be missing)
#   SETUP_DEMO_CONFIG   the demo's configuration (/countdown/demo.env)
#   SETUP_DEMO_HOST     the demo's fake Discord (fake-discord)
#   SETUP_DEMO_WAIT     seconds to look for it when there is no token (20)
#   SETUP_OUT           where the volumes are mounted, one directory per
#                       service (/secrets)
#   SETUP_UID_<SERVICE> owner of that service's files: BOT 10001, DB 999,
#                       PGADMIN 5050, GRAFANA 472, ALERTMANAGER 65534,
#                       POSTGRES_EXPORTER 65534
set -eu

config=${SETUP_CONFIG:-/countdown/project/config.env}
demo_config=${SETUP_DEMO_CONFIG:-/countdown/demo.env}
demo_host=${SETUP_DEMO_HOST:-fake-discord}
demo_wait=${SETUP_DEMO_WAIT:-20}
out=${SETUP_OUT:-/secrets}

say() { printf 'setup: %s\n' "$*" >&2; }
failed=0
problem() { say "$*"; failed=1; }
demo_hint="to try the stack without a token, run the demo: docker compose --profile demo up"

# `NAME=value` lines of $1; comments and blank lines skipped. CR of a CRLF
# file dropped.
read_lines() {
  sed -e 's/\r$//' "$1" | grep -E '^[[:space:]]*[A-Za-z_][A-Za-z0-9_]*=' || true
}

# The value of NAME in $lines (the last line setting it), without
# surrounding blanks or one pair of surrounding quotes; $2 when NAME is not
# set at all.
value() {
  line=$(printf '%s\n' "$lines" | grep -E "^[[:space:]]*$1=" | tail -n 1)
  if [ -z "$line" ]; then
    printf '%s' "${2-}"
    return
  fi
  v=${line#*=}
  v=$(printf '%s' "$v" | sed -e 's/^[[:space:]]*//' -e 's/[[:space:]]*$//')
  case $v in
    \"*\") v=${v#\"}; v=${v%\"} ;;
    \'*\') v=${v#\'}; v=${v%\'} ;;
  esac
  printf '%s' "$v"
}

# Whether the demo's fake Discord answers to its name, looking for up to
# $demo_wait seconds.
fake_runs() {
  deadline=$(($(date +%s) + demo_wait))
  while :; do
    if getent hosts "$demo_host" >/dev/null 2>&1; then return 0; fi
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 1
  done
}

# --- config.env, or the demo ---------------------------------------------------------
lines=
if [ -f "$config" ] && [ -r "$config" ]; then
  lines=$(read_lines "$config")
fi
mode=config
if [ -z "$(value DISCORD_TOKEN)" ] && fake_runs; then
  mode=demo
  config=$demo_config
  lines=$(read_lines "$config")
  say "the demo: no DISCORD_TOKEN (config.env missing, or its DISCORD_TOKEN empty) and the demo's fake Discord runs, so the stack takes docker/demo.env: the bot counts against the fake"
elif [ -d "$config" ]; then
  say "$config is a directory, not config.env: run \`cp config.env.example config.env\` beside docker-compose.yaml (and remove the directory Docker made); $demo_hint"
  exit 1
elif [ ! -r "$config" ]; then
  say "no config.env beside docker-compose.yaml: run \`cp config.env.example config.env\` and set DISCORD_TOKEN and the passwords; $demo_hint"
  exit 1
fi

# The names config.env may set, by who reads them. The bot gets its lines
# verbatim (it parses config.env itself); the others get single values.
bot_names="DISCORD_TOKEN DISCORD_API_URL DISCORD_HTTP_TIMEOUT DISCORD_GUILD_ID STOP_POLICY SHARDS
POSTGRES_DB POSTGRES_USER POSTGRES_PASSWORD MAX_ACTIVE MAX_ACTIVE_PER_GUILD GLOBAL_RATE
RESUME_MAX_AGE RESUME_CHECK_AFTER RETENTION RUST_LOG LOG_FORMAT"
# Set by docker-compose.yaml for the bot, or not used in the stack.
stack_names="POSTGRES_HOST POSTGRES_PORT METRICS_ADDR DATABASE_URL"
other_names="POSTGRES_ADMIN_USER POSTGRES_ADMIN_PASSWORD POSTGRES_MONITOR_USER POSTGRES_MONITOR_PASSWORD
POSTGRES_GRAFANA_USER POSTGRES_GRAFANA_PASSWORD
PGADMIN_DEFAULT_EMAIL PGADMIN_DEFAULT_PASSWORD GF_SECURITY_ADMIN_USER GF_SECURITY_ADMIN_PASSWORD
ALERT_DISCORD_WEBHOOK_URL"

contains() { # contains WORD LIST
  for w in $2; do [ "$w" = "$1" ] && return 0; done
  return 1
}

# Names nobody reads: a typo, or a variable of a newer version of the bot that
# this script does not hand over yet.
for name in $(printf '%s\n' "$lines" | sed -e 's/^[[:space:]]*//' -e 's/=.*//' | sort -u); do
  contains "$name" "$bot_names $stack_names $other_names" ||
    say "warning: config.env sets $name, which no service of the stack reads; ignored"
done
if [ -n "$(value DATABASE_URL)" ]; then
  say "warning: DATABASE_URL is ignored in the stack: the bot connects to the service db as POSTGRES_USER"
fi

db_name=$(value POSTGRES_DB countdown)
bot_user=$(value POSTGRES_USER countdown)
bot_password=$(value POSTGRES_PASSWORD)
admin_user=$(value POSTGRES_ADMIN_USER postgres)
admin_password=$(value POSTGRES_ADMIN_PASSWORD)
monitor_user=$(value POSTGRES_MONITOR_USER countdown_monitor)
monitor_password=$(value POSTGRES_MONITOR_PASSWORD)
reader_user=$(value POSTGRES_GRAFANA_USER countdown_grafana)
reader_password=$(value POSTGRES_GRAFANA_PASSWORD)
pgadmin_email=$(value PGADMIN_DEFAULT_EMAIL)
pgadmin_password=$(value PGADMIN_DEFAULT_PASSWORD)
grafana_user=$(value GF_SECURITY_ADMIN_USER admin)
grafana_password=$(value GF_SECURITY_ADMIN_PASSWORD)
webhook_url=$(value ALERT_DISCORD_WEBHOOK_URL)

# --- checks --------------------------------------------------------------------
for pair in "POSTGRES_DB:$db_name" "POSTGRES_USER:$bot_user" \
  "POSTGRES_ADMIN_USER:$admin_user" "POSTGRES_MONITOR_USER:$monitor_user" \
  "POSTGRES_GRAFANA_USER:$reader_user"; do
  name=${pair%%:*} v=${pair#*:}
  if ! printf '%s' "$v" | grep -Eqx '[a-z_][a-z0-9_]{0,62}'; then
    problem "$name=$v must be a plain PostgreSQL name (a-z, 0-9, _; not starting with a digit)"
  fi
done
if [ "$(printf '%s\n' "$bot_user" "$admin_user" "$monitor_user" "$reader_user" | sort -u | wc -l)" -ne 4 ]; then
  problem "POSTGRES_USER ($bot_user), POSTGRES_ADMIN_USER ($admin_user), POSTGRES_MONITOR_USER ($monitor_user) and POSTGRES_GRAFANA_USER ($reader_user) must be four different roles"
fi
for name in POSTGRES_PASSWORD POSTGRES_ADMIN_PASSWORD POSTGRES_MONITOR_PASSWORD POSTGRES_GRAFANA_PASSWORD \
  PGADMIN_DEFAULT_PASSWORD GF_SECURITY_ADMIN_PASSWORD; do
  v=$(value "$name")
  if [ -z "$v" ]; then
    problem "$name is empty in config.env"
  else
    case $v in
      change-me*) say "warning: $name is still the value of config.env.example; change it before the first start" ;;
    esac
  fi
done
[ -n "$grafana_user" ] || problem "GF_SECURITY_ADMIN_USER is empty in config.env"
# Without a token the bot exits at once and restarts forever.
[ -n "$(value DISCORD_TOKEN)" ] || problem "DISCORD_TOKEN is empty in config.env: the bot needs its \
token (Discord developer portal > your application > Bot); $demo_hint"
# Grafana expands $NAME, ${NAME} and $__file{...} in every value of its
# provisioning files, the password read from its file included.
case $reader_password in
  *'$'*) problem "POSTGRES_GRAFANA_PASSWORD must not contain \$: Grafana's provisioning would expand it as a variable and log in with another password" ;;
esac

# pgAdmin refuses a login e-mail its validator (email_validator, deliverability
# not checked) finds invalid, and then restarts forever. What it refuses in
# practice: no domain with a dot (admin@localhost), a special-use domain
# (.localhost, .local, .test, .invalid, .onion, .arpa), a top-level domain not
# ending in a letter, a domain character other than a-z, 0-9, - and . (or
# non-ASCII), a dot at either end of the name or two in a row, or no address
# at all. .ci/pgadmin-check compares these verdicts with pgAdmin's own.
email_ok() {
  e=$1
  case $e in
    '' | *[[:space:]]* | *@*@* | @* | *@) return 1 ;;
    *@*) ;;
    *) return 1 ;;
  esac
  # Characters an unquoted address never has.
  if printf '%s' "$e" | grep -q '[]["()<>;:,\\]'; then return 1; fi
  case ${e%@*} in
    .* | *. | *..*) return 1 ;;
  esac
  domain=$(printf '%s' "${e#*@}" | tr 'A-Z' 'a-z')
  case $domain in
    *.*) ;;
    *) return 1 ;;
  esac
  case $domain in
    .* | *. | *..* | -* | *.-* | *-.* | *- ) return 1 ;;
  esac
  # A host name: a-z, 0-9, - and . (non-ASCII ones are IDNA names); labels
  # of at most 63 characters.
  [ -z "$(printf '%s' "$domain" | LC_ALL=C tr -d 'a-z0-9.\200-\377-')" ] || return 1
  if printf '%s' "$domain" | tr '.' '\n' | LC_ALL=C grep -q '.\{64\}'; then return 1; fi
  case ${domain##*.} in
    localhost | local | test | invalid | onion | arpa) return 1 ;;
    *[0-9]) return 1 ;; # a top-level domain ends in a letter (no IP address)
  esac
  return 0
}
if ! email_ok "$pgadmin_email"; then
  problem "PGADMIN_DEFAULT_EMAIL='$pgadmin_email' is not an address pgAdmin accepts (it needs a domain with a dot that is not a reserved name such as localhost, local or test, e.g. admin@example.com); pgAdmin would refuse it and restart forever"
fi

# The demo posts its alerts to the fake's webhook, over plain http inside
# the stack; a real configuration to Discord's, over https.
webhook_scheme=https://
[ "$mode" = config ] || webhook_scheme=http://
case $webhook_url in
  '') say "ALERT_DISCORD_WEBHOOK_URL is empty: alerts show in Prometheus, Grafana and Alertmanager, and go to no Discord channel" ;;
  "$webhook_scheme"*) ;;
  *) say "warning: ALERT_DISCORD_WEBHOOK_URL does not start with https:// (a Discord webhook URL looks like https://discord.com/api/webhooks/<id>/<token>); Alertmanager will not use it"
     webhook_url= ;;
esac

# Which configuration filled the volumes: PostgreSQL, pgAdmin and Grafana
# keep the passwords of their first start, and the database its rows.
# Volumes written before this file existed are a real stack's.
previous=
if [ -f "$out/db/stack_mode" ]; then
  previous=$(cat "$out/db/stack_mode")
elif [ -f "$out/db/postgres_db" ]; then
  previous=config
fi
if [ "$mode" = config ] && [ "$previous" = demo ]; then
  problem "the stack's volumes hold the demo (its public passwords, its rows): remove them with \
\`docker compose --profile demo down -v\`, then start again"
elif [ "$mode" = demo ] && [ "$previous" = config ]; then
  problem "the stack's volumes hold a config.env's data, which the demo does not touch: run the \
demo as a project of its own, \`docker compose -p countdown-demo --profile demo up\`"
fi

if [ "$failed" -ne 0 ]; then
  what=config.env
  [ "$mode" = config ] || what="the demo's configuration"
  say "$what has the problems above; nothing written, no service that needs a credential starts"
  exit 1
fi

# --- files -----------------------------------------------------------------------
umask 077

# put SERVICE NAME CONTENT: writes $out/SERVICE/NAME, mode 0400, owned by the
# service's uid, replacing the old file at once (rename).
put() {
  dir=$out/$1
  var=SETUP_UID_$(printf '%s' "$1" | tr 'a-z-' 'A-Z_')
  eval "owner=\${$var:-}"
  [ -n "$owner" ] || { say "internal: no $var"; exit 1; }
  [ -d "$dir" ] || { say "$dir is missing (a volume of docker-compose.yaml)"; exit 1; }
  chmod 0711 "$dir"
  tmp=$(mktemp "$dir/.$2.XXXXXX")
  printf '%s' "$3" > "$tmp"
  chmod 0400 "$tmp"
  if [ "${SETUP_NO_CHOWN:-}" != 1 ]; then chown "$owner" "$tmp"; fi
  mv -f "$tmp" "$dir/$2"
}

: "${SETUP_UID_BOT:=10001}" "${SETUP_UID_DB:=999}" "${SETUP_UID_PGADMIN:=5050}"
: "${SETUP_UID_GRAFANA:=472}" "${SETUP_UID_ALERTMANAGER:=65534}" "${SETUP_UID_POSTGRES_EXPORTER:=65534}"

# The bot: its own lines of config.env, as written (it parses them itself);
# POSTGRES_DB and POSTGRES_USER with their defaults when unset.
bot_env=$(printf '%s\n' "$lines" | while IFS= read -r line; do
  name=$(printf '%s' "$line" | sed -e 's/^[[:space:]]*//' -e 's/=.*//')
  case $name in
    POSTGRES_DB | POSTGRES_USER) ;; # written below, with their defaults
    *) if contains "$name" "$bot_names"; then printf '%s\n' "$line"; fi ;;
  esac
done)
source_note="from config.env: the bot's
# variables only. Edit config.env, not this file."
[ "$mode" = config ] || source_note="from docker/demo.env: the demo's bot,
# counting against the fake Discord."
bot_env="# Written by the setup service (docker/setup.sh) $source_note
$bot_env
POSTGRES_DB=$db_name
POSTGRES_USER=$bot_user
"
put bot config.env "$bot_env"

put db postgres_admin_user "$admin_user"
put db postgres_admin_password "$admin_password"
put db postgres_db "$db_name"
put db bot_user "$bot_user"
put db bot_password "$bot_password"
put db monitor_user "$monitor_user"
put db monitor_password "$monitor_password"
put db grafana_user "$reader_user"
put db grafana_password "$reader_password"

put pgadmin email "$pgadmin_email"
put pgadmin password "$pgadmin_password"
put pgadmin postgres_admin_user "$admin_user"
put pgadmin postgres_admin_password "$admin_password"
put pgadmin postgres_db "$db_name"

put grafana admin_user "$grafana_user"
put grafana admin_password "$grafana_password"
put grafana postgres_user "$reader_user"
put grafana postgres_password "$reader_password"
put grafana postgres_db "$db_name"

put alertmanager discord_webhook_url "$webhook_url"

put postgres-exporter user "$monitor_user"
put postgres-exporter password "$monitor_password"

put db stack_mode "$mode"

say "credentials written for bot, db, pgadmin, grafana, alertmanager and postgres-exporter (from $(basename "$config"))"
if [ "$mode" = demo ]; then
  say "the demo's logins (public, as every value of docker/demo.env): Grafana http://localhost:3000 $grafana_user / $grafana_password, pgAdmin http://localhost:5050 $pgadmin_email / $pgadmin_password"
fi
