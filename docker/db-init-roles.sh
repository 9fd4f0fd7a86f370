#!/bin/sh
# The roles of the stack's PostgreSQL, and the bot's schema owned by the bot.
#
# docker-compose.yaml mounts this file at
# /docker-entrypoint-initdb.d/10-countdown-roles.sh: the postgres image runs
# it once, on an empty volume, after creating the superuser
# (POSTGRES_ADMIN_USER) and the database (POSTGRES_DB). Values come from the
# files the setup service wrote (docker/setup.sh), mounted at /run/countdown.
#
#   POSTGRES_USER (the bot)     LOGIN, not superuser, no CREATEDB/CREATEROLE;
#                               owner of the database POSTGRES_DB and of every
#                               table in it (init.sql is applied as this role,
#                               so the bot's own schema migrations at start,
#                               ALTER TABLEs, are allowed)
#   POSTGRES_MONITOR_USER       LOGIN, member of pg_monitor (statistics only,
#                               no table of the bot readable), read-only
#                               transactions: postgres_exporter's role
#   POSTGRES_GRAFANA_USER       LOGIN, SELECT on tasks, command_errors and
#                               general_errors only (no other table, no
#                               write), read-only transactions, a statement
#                               timeout: the role of Grafana's PostgreSQL
#                               data source (docs/dashboards.md)
#   POSTGRES_ADMIN_USER         the superuser, for people (pgAdmin, psql)
#
# Idempotent: run it again by hand to create the roles in a database made
# before they existed, or to set the passwords of config.env again:
#   docker compose exec -u postgres db sh /docker-entrypoint-initdb.d/10-countdown-roles.sh
# (as the postgres OS user, over the local socket: no password needed).
#
# Environment (all optional): COUNTDOWN_SECRETS_DIR (/run/countdown),
# COUNTDOWN_INIT_SQL (/countdown/init.sql); psql's PGHOST/PGPORT pick the
# server (the local socket by default); POSTGRES_USER / POSTGRES_DB, which
# the postgres image sets while it initialises, are the superuser and the
# database to connect as and to.
#
# The postgres image sources a *.sh that is not executable: nothing here
# exits or leaves a variable the image uses.

countdown_roles() (
  set -eu
  dir=${COUNTDOWN_SECRETS_DIR:-/run/countdown}
  read_file() { cat "$dir/$1"; }
  admin=${POSTGRES_USER:-$(read_file postgres_admin_user)}
  db=${POSTGRES_DB:-$(read_file postgres_db)}

  psql -v ON_ERROR_STOP=1 --no-psqlrc --quiet --username "$admin" --dbname "$db" \
    -v db="$db" \
    -v admin="$admin" \
    -v admin_password="$(read_file postgres_admin_password)" \
    -v bot="$(read_file bot_user)" \
    -v bot_password="$(read_file bot_password)" \
    -v monitor="$(read_file monitor_user)" \
    -v monitor_password="$(read_file monitor_password)" \
    -v reader="$(read_file grafana_user)" \
    -v reader_password="$(read_file grafana_password)" \
    -v init_sql="${COUNTDOWN_INIT_SQL:-/countdown/init.sql}" <<'SQL'
-- The bot: owns its database, nothing more.
SELECT format('CREATE ROLE %I', :'bot')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'bot') \gexec
ALTER ROLE :"bot" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'bot_password';
ALTER DATABASE :"db" OWNER TO :"bot";

-- postgres_exporter: statistics only.
SELECT format('CREATE ROLE %I', :'monitor')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'monitor') \gexec
ALTER ROLE :"monitor" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'monitor_password';
GRANT pg_monitor TO :"monitor";
ALTER ROLE :"monitor" SET default_transaction_read_only = on;

-- Grafana's tables: reads what the bot recorded, nothing more.
SELECT format('CREATE ROLE %I', :'reader')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'reader') \gexec
ALTER ROLE :"reader" WITH LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'reader_password';
ALTER ROLE :"reader" SET default_transaction_read_only = on;
ALTER ROLE :"reader" SET statement_timeout = '30s';

-- The superuser's password follows config.env too, when this runs again.
ALTER ROLE :"admin" WITH PASSWORD :'admin_password';

-- Tables made earlier by another role (a database from before these roles)
-- are handed over to the bot, which alters them at start.
SELECT format('ALTER TABLE %I.%I OWNER TO %I', schemaname, tablename, :'bot')
  FROM pg_tables
 WHERE schemaname = 'public' AND tableowner <> :'bot' \gexec

-- The bot's schema, created by the bot's role so that the bot owns it (the
-- bot's migrations at start reach the same schema, and apply over it).
SET ROLE :"bot";
\i :init_sql
RESET ROLE;

-- Grafana's role (after init.sql: the tables exist): SELECT on these three
-- tables and no other privilege on any table of the schema.
GRANT CONNECT ON DATABASE :"db" TO :"reader";
GRANT USAGE ON SCHEMA public TO :"reader";
REVOKE ALL ON ALL TABLES IN SCHEMA public FROM :"reader";
REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM :"reader";
GRANT SELECT ON TABLE tasks, command_errors, general_errors TO :"reader";
SQL
  echo "countdown roles: $(read_file bot_user) owns $db, $(read_file monitor_user) monitors, $(read_file grafana_user) reads tasks and errors"
)

countdown_roles
