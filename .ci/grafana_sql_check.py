"""Every SQL query of the Grafana dashboards, run for real, for .ci/ops-checks.

    python3 .ci/grafana_sql_check.py

On the PostgreSQL at 127.0.0.1:5432 (PGHOST / PGPORT override it), as its
superuser `postgres` (PGUSER overrides it; trust or a password in the
environment), this
  - creates a throwaway database and throwaway roles whose names end in a
    random suffix (the cluster's roles are shared: nothing of anyone else is
    touched), a superuser among them standing in for POSTGRES_ADMIN_USER;
  - writes the credentials with docker/setup.sh from a config.env naming
    those roles, and runs docker/db-init-roles.sh on the database, as the
    postgres image does on an empty volume: the roles, init.sql as the bot's
    role, Grafana's read-only role POSTGRES_GRAFANA_USER;
  - inserts, as the bot's role, a few rows of each kind (running, finished
    and stopped countdowns, a DM, command and general errors, old rows);
  - proves the read-only role's rights: SELECT on tasks, command_errors and
    general_errors and no other privilege on any table; INSERT, UPDATE,
    DELETE and TRUNCATE refused by privilege (even in a READ WRITE
    transaction) and by its read-only transactions; no other table readable,
    nothing creatable;
  - takes every rawSql of grafana/dashboards/*.json (panels, rows'
    panels, annotations, variables), replaces Grafana's macros
    ($__timeFilter(col) becomes col BETWEEN now() - interval '1 day' AND
    now(), ...; an unknown macro or variable is a failure, so that this file
    learns it), and runs each as the read-only role: it must succeed and
    return rows;
  - drops the database and the roles, whatever happened.

Needs psql, sh and the superuser's access to 127.0.0.1:5432.
"""

import glob
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile

HOST = os.environ.get("PGHOST", "127.0.0.1")
PORT = os.environ.get("PGPORT", "5432")
SUPERUSER = os.environ.get("PGUSER", "postgres")
READABLE = {"tasks", "command_errors", "general_errors"}
POSTGRES_TYPES = {"grafana-postgresql-datasource", "postgres"}


def fail(message):
    print(f"  FAILED: {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def ok(message):
    print(f"  ok: {message}", flush=True)


# The throwaway roles' passwords (the superuser's comes from the
# environment, if it needs one).
PASSWORDS = {}


def psql(user, db, sql, check=True):
    """Runs sql as user; returns (returncode, stdout, stderr)."""
    env = dict(os.environ, PGHOST=HOST, PGPORT=PORT, PGCONNECT_TIMEOUT="10")
    if user in PASSWORDS:
        env["PGPASSWORD"] = PASSWORDS[user]
    result = subprocess.run(
        ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-U", user, "-d", db, "-c", sql],
        capture_output=True, text=True, env=env, timeout=60,
    )
    if check and result.returncode != 0:
        fail(f"psql as {user} on {db} failed: {result.stderr.strip()}\n{sql}")
    return result.returncode, result.stdout, result.stderr


# --- Grafana's macros ----------------------------------------------------------------

# The dashboard's time range here: the last day.
FROM = "(now() - interval '1 day')"
TO = "now()"
INTERVAL_SECONDS = 60


def macro_args(sql, start):
    """(arguments, index past the closing parenthesis) of a macro call whose
    opening parenthesis is at start."""
    depth, i, args, current = 0, start, [], ""
    while i < len(sql):
        ch = sql[i]
        if ch == "(":
            depth += 1
            if depth > 1:
                current += ch
        elif ch == ")":
            depth -= 1
            if depth == 0:
                if current.strip():
                    args.append(current.strip())
                return args, i + 1
            current += ch
        elif ch == "," and depth == 1:
            args.append(current.strip())
            current = ""
        else:
            current += ch
        i += 1
    fail(f"unbalanced parentheses in a macro of:\n{sql}")


def interval_seconds(text):
    text = text.strip().strip("'\"")
    if text in ("$__interval", "auto"):
        return INTERVAL_SECONDS
    m = re.fullmatch(r"(\d+)(ms|s|m|h|d)", text)
    if not m:
        fail(f"interval {text!r} of $__timeGroup not understood")
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]


def expand(name, args):
    """The SQL a Grafana PostgreSQL macro becomes (its documented meaning), with
    the time range FROM .. TO."""
    one = args[0] if args else None
    if name == "__time":
        return f'{one} AS "time"'
    if name == "__timeEpoch":
        return f'extract(epoch FROM {one}) AS "time"'
    if name == "__timeFilter":
        return f"{one} BETWEEN {FROM} AND {TO}"
    if name == "__timeFrom":
        return FROM
    if name == "__timeTo":
        return TO
    if name in ("__timeGroup", "__timeGroupAlias"):
        step = interval_seconds(args[1])
        sql = f"to_timestamp(floor(extract(epoch FROM {one}) / {step}) * {step})"
        return sql + (' AS "time"' if name == "__timeGroupAlias" else "")
    if name == "__unixEpochFilter":
        return f"{one} BETWEEN extract(epoch FROM {FROM}) AND extract(epoch FROM {TO})"
    if name == "__unixEpochFrom":
        return f"extract(epoch FROM {FROM})"
    if name == "__unixEpochTo":
        return f"extract(epoch FROM {TO})"
    if name == "__unixEpochNanoFilter":
        return f"{one} BETWEEN (extract(epoch FROM {FROM}) * 1e9)::bigint AND (extract(epoch FROM {TO}) * 1e9)::bigint"
    if name == "__unixEpochNanoFrom":
        return f"(extract(epoch FROM {FROM}) * 1e9)::bigint"
    if name == "__unixEpochNanoTo":
        return f"(extract(epoch FROM {TO}) * 1e9)::bigint"
    return None


VARIABLES = {
    "__interval_ms": str(INTERVAL_SECONDS * 1000),
    "__interval": f"'{INTERVAL_SECONDS}s'",
}


def to_sql(raw):
    """rawSql with every macro and variable replaced; a failure for one this
    check does not know."""
    out, i = [], 0
    while i < len(raw):
        if raw[i] != "$":
            out.append(raw[i])
            i += 1
            continue
        m = re.match(r"\$\{?(\w+)\}?", raw[i:])
        if not m:
            fail(f"a lone $ in:\n{raw}")
        name = m.group(1)
        end = i + m.end()
        if end < len(raw) and raw[end] == "(":
            args, end = macro_args(raw, end)
            sql = expand(name, args)
            if sql is None:
                fail(f"unknown macro ${name}(...) (teach .ci/grafana_sql_check.py what it means) in:\n{raw}")
        elif name in VARIABLES:
            sql = VARIABLES[name]
        else:
            fail(f"unknown variable ${name} (teach .ci/grafana_sql_check.py what it becomes) in:\n{raw}")
        out.append(sql)
        i = end
    return "".join(out).strip().rstrip(";")


def dashboard_queries(postgres_uids):
    """(where, rawSql) of every PostgreSQL query of the dashboards."""
    found = []

    def is_pg(ds, inherited):
        ds = ds or inherited
        return bool(ds) and (ds.get("uid") in postgres_uids or ds.get("type") in POSTGRES_TYPES)

    def walk(path, title, panels):
        for p in panels:
            ds = p.get("datasource")
            for t in p.get("targets", []):
                if "rawSql" in t or is_pg(t.get("datasource"), ds):
                    if not t.get("rawSql"):
                        fail(f"{path}: panel {p.get('title')!r} has a PostgreSQL query without rawSql")
                    found.append((f"{path}: {title}{p.get('title')!r}/{t.get('refId')}", t["rawSql"]))
            walk(path, f"{title}{p.get('title')!r} > " if p.get("type") == "row" else title, p.get("panels", []))

    for path in sorted(glob.glob("grafana/dashboards/*.json")):
        dash = json.load(open(path))
        walk(path, "", dash.get("panels", []))
        for a in dash.get("annotations", {}).get("list", []):
            sql = a.get("rawQuery") or (a.get("target") or {}).get("rawSql")
            if sql and is_pg(a.get("datasource"), None):
                found.append((f"{path}: annotation {a.get('name')!r}", sql))
        for v in dash.get("templating", {}).get("list", []):
            query = v.get("query")
            sql = query.get("rawSql") if isinstance(query, dict) else query
            if sql and is_pg(v.get("datasource"), None):
                found.append((f"{path}: variable {v.get('name')!r}", sql))
    return found


# --- the check ---------------------------------------------------------------------------

def main():
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    import yaml  # PyYAML, as the rest of ops-checks

    postgres_uids = set()
    for path in glob.glob("grafana/provisioning/datasources/*.yml"):
        for ds in yaml.safe_load(open(path)).get("datasources", []):
            if ds.get("type") in POSTGRES_TYPES:
                postgres_uids.add(ds["uid"])
    if not postgres_uids:
        fail("no PostgreSQL datasource in grafana/provisioning/datasources/")
    queries = dashboard_queries(postgres_uids)
    if not queries:
        fail("no SQL query in grafana/dashboards/")

    rc, _, err = psql(SUPERUSER, "postgres", "SELECT 1", check=False)
    if rc != 0:
        fail(f"cannot reach PostgreSQL at {HOST}:{PORT} as {SUPERUSER}: {err.strip()}")

    suffix = f"{os.getpid()}_{secrets.token_hex(4)}"
    db = f"countdown_sqlcheck_{suffix}"
    admin, bot, monitor, reader = (f"cdsql_{suffix}_{r}" for r in ("admin", "bot", "monitor", "grafana"))
    tmp = tempfile.mkdtemp(prefix="grafana-sql-check-")
    try:
        PASSWORDS.update({admin: "admin-pw", bot: "bot-pw", reader: "grafana's \"pw\""})
        psql(SUPERUSER, "postgres", f"CREATE ROLE {admin} LOGIN SUPERUSER")
        psql(SUPERUSER, "postgres", f"CREATE DATABASE {db} OWNER {admin}")

        # The setup service's files, from a config.env naming the roles.
        config = os.path.join(tmp, "config.env")
        with open(config, "w") as f:
            f.write(
                "DISCORD_TOKEN=not-a-token\n"
                f"POSTGRES_DB={db}\nPOSTGRES_USER={bot}\nPOSTGRES_PASSWORD=bot-pw\n"
                f"POSTGRES_ADMIN_USER={admin}\nPOSTGRES_ADMIN_PASSWORD=admin-pw\n"
                f"POSTGRES_MONITOR_USER={monitor}\nPOSTGRES_MONITOR_PASSWORD=monitor-pw\n"
                f"POSTGRES_GRAFANA_USER={reader}\nPOSTGRES_GRAFANA_PASSWORD=grafana's \"pw\"\n"
                "PGADMIN_DEFAULT_EMAIL=admin@example.com\nPGADMIN_DEFAULT_PASSWORD=pgadmin-pw\n"
                "GF_SECURITY_ADMIN_PASSWORD=grafana-pw\n"
            )
        out = os.path.join(tmp, "secrets")
        for svc in ("bot", "db", "pgadmin", "grafana", "alertmanager", "postgres-exporter"):
            os.makedirs(os.path.join(out, svc))
        setup = subprocess.run(
            ["sh", "docker/setup.sh"], capture_output=True, text=True,
            env=dict(os.environ, SETUP_NO_CHOWN="1", SETUP_CONFIG=config, SETUP_OUT=out),
        )
        if setup.returncode != 0:
            fail(f"docker/setup.sh failed:\n{setup.stderr}")
        for name, want in (("postgres_user", reader), ("postgres_db", db), ("postgres_password", "grafana's \"pw\"")):
            got = open(os.path.join(out, "grafana", name)).read()
            if got != want:
                fail(f"setup wrote grafana/{name} = {got!r}, expected {want!r}")

        roles = subprocess.run(
            ["sh", "docker/db-init-roles.sh"], capture_output=True, text=True,
            env=dict(os.environ, PGHOST=HOST, PGPORT=PORT, POSTGRES_USER=admin, POSTGRES_DB=db,
                     COUNTDOWN_SECRETS_DIR=os.path.join(out, "db"),
                     COUNTDOWN_INIT_SQL=os.path.abspath("init.sql")),
        )
        if roles.returncode != 0:
            fail(f"docker/db-init-roles.sh failed:\n{roles.stdout}{roles.stderr}")
        ok(f"docker/db-init-roles.sh on a throwaway database of {HOST}:{PORT}: {roles.stdout.strip().splitlines()[-1]}")

        # A few rows of each kind, written by the bot's role as the bot does.
        psql(bot, db, """
INSERT INTO tasks (channel_id, guild_id, user_id, target, last_sent, status, source, created_at, updated_at, finished_at, last_message_id) VALUES
  (1100000000000000001, 1200000000000000001, 1300000000000000001, 100, 42, 'running', 'mention', now() - interval '5 minutes', now() - interval '2 seconds', NULL, 1400000000000000001),
  (1100000000000000002, NULL, 1300000000000000002, 10, 0, 'running', 'dm', now() - interval '3 seconds', now() - interval '3 seconds', NULL, NULL),
  (1100000000000000003, 1200000000000000001, 1300000000000000001, 3, 3, 'finished', 'slash', now() - interval '1 hour', now() - interval '1 hour', now() - interval '1 hour', 1400000000000000003),
  (1100000000000000004, 1200000000000000002, 1300000000000000003, 30, 7, 'stopped', 'mention', now() - interval '2 hours', now() - interval '2 hours', now() - interval '2 hours', NULL),
  (1100000000000000005, 1200000000000000002, 1300000000000000003, 9, 9, 'finished', 'mention', now() - interval '3 days', now() - interval '3 days', now() - interval '3 days', NULL);
INSERT INTO command_errors (kind, channel_id, guild_id, user_id, content, error, task_id, created_at) VALUES
  ('busy_channel', 1100000000000000001, 1200000000000000001, 1300000000000000004, 'count to 5', 'already counting in this channel', (SELECT min(id) FROM tasks), now() - interval '1 minute'),
  ('invalid', 1100000000000000002, NULL, 1300000000000000002, 'count to abc', 'not_a_number', NULL, now() - interval '10 minutes'),
  ('send_failed', 1100000000000000004, 1200000000000000002, NULL, NULL, 'HTTP 403 Missing Access', (SELECT max(id) FROM tasks), now() - interval '2 hours'),
  ('busy_bot', 1100000000000000005, 1200000000000000002, 1300000000000000003, 'count to 9', 'MAX_ACTIVE reached', NULL, now() - interval '3 days');
INSERT INTO general_errors (context, error, created_at) VALUES
  ('registration', 'slash commands (global) not registered: HTTP 500', now() - interval '30 minutes'),
  ('resume', 'countdown 4 in channel 1100000000000000004: cannot read the channel''s messages', now() - interval '5 minutes'),
  ('leadership', 'leadership lost (lock connection dropped); leading again', now() - interval '3 days');
""")
        ok("rows written by the bot's role: 5 countdowns (2 running, one in a DM), 4 command errors, 3 general errors, some older than a day")

        # --- the read-only role's rights ------------------------------------------------
        # Every privilege on every table, view and sequence of the schema (a
        # column's counts too).
        _, out_rights, _ = psql(admin, db, f"""
SELECT c.relname || ':' || p.priv
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 CROSS JOIN unnest(ARRAY['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) AS p(priv)
 WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
   AND CASE WHEN p.priv IN ('SELECT', 'INSERT', 'UPDATE', 'REFERENCES')
            THEN has_any_column_privilege('{reader}', c.oid, p.priv)
            ELSE has_table_privilege('{reader}', c.oid, p.priv) END
UNION ALL
SELECT c.relname || ':' || p.priv
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 CROSS JOIN unnest(ARRAY['USAGE', 'SELECT', 'UPDATE']) AS p(priv)
 WHERE n.nspname = 'public' AND c.relkind = 'S'
   AND has_sequence_privilege('{reader}', c.oid, p.priv)
 ORDER BY 1""")
        got = set(out_rights.split())
        want = {f"{t}:SELECT" for t in READABLE}
        if got != want:
            fail(f"{reader} has the privileges {sorted(got)}, expected exactly {sorted(want)}")
        _, attrs, _ = psql(admin, db, f"""
SELECT rolsuper::text || rolcreatedb::text || rolcreaterole::text || rolreplication::text
       || rolbypassrls::text || rolcanlogin::text || ' ' || array_to_string(rolconfig, ',')
  FROM pg_roles WHERE rolname = '{reader}'""")
        flags, _, settings = attrs.strip().partition(" ")
        if flags != "falsefalsefalsefalsefalsetrue" or "default_transaction_read_only=on" not in settings:
            fail(f"{reader} is not a plain login role with read-only transactions: {attrs.strip()}")
        _, member_of, _ = psql(admin, db, f"SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member WHERE r.rolname = '{reader}'")
        if member_of.strip() != "0":
            fail(f"{reader} is a member of other roles (their rights would be its own)")
        ok(f"{reader}: login, no superuser, member of no role, read-only transactions; SELECT on {', '.join(sorted(READABLE))} and no other privilege on any table")

        columns = {
            "tasks": "(channel_id, user_id, target) VALUES (1, 1, 1)",
            "command_errors": "(kind, channel_id, error) VALUES ('invalid', 1, 'written by Grafana')",
            "general_errors": "(context, error) VALUES ('grafana', 'written by Grafana')",
        }
        writes = {
            "INSERT": "INSERT INTO {t} {values}",
            "UPDATE": "UPDATE {t} SET created_at = created_at",
            "DELETE": "DELETE FROM {t}",
            "TRUNCATE": "TRUNCATE {t}",
        }
        for table in sorted(READABLE):
            for verb, sql in writes.items():
                statement = sql.format(t=table, values=columns[table])
                # With its read-only transactions overridden, the privilege refuses.
                rc, _, err = psql(reader, db, f"BEGIN READ WRITE; {statement}; COMMIT", check=False)
                if rc == 0 or "permission denied" not in err:
                    fail(f"{reader} could {verb} {table} in a READ WRITE transaction (or failed otherwise: {err.strip()})")
                # As it logs in: refused as well.
                rc, _, err = psql(reader, db, statement, check=False)
                if rc == 0:
                    fail(f"{reader} could {verb} {table}")
        ok(f"{reader} cannot INSERT, UPDATE, DELETE or TRUNCATE tasks, command_errors, general_errors (refused by privilege, and by its read-only transactions)")
        for what, sql in (
            ("read leader_state", "SELECT * FROM leader_state"),
            ("create a table", "BEGIN READ WRITE; CREATE TABLE public.grafana_wrote_this (x int); COMMIT"),
        ):
            rc, _, err = psql(reader, db, sql, check=False)
            if rc == 0:
                fail(f"{reader} can {what}")
        ok(f"{reader} cannot read leader_state nor create a table")

        # --- every panel's SQL --------------------------------------------------------------
        for where, raw in queries:
            sql = to_sql(raw)
            rc, _, err = psql(reader, db, sql, check=False)
            if rc != 0:
                fail(f"{where}: fails as {reader}: {err.strip()}\n{sql}")
            _, count, _ = psql(reader, db, f"SELECT count(*) FROM (\n{sql}\n) AS panel_query")
            if int(count.strip()) == 0:
                fail(f"{where}: no rows, although every kind of row is in the tables\n{sql}")
            ok(f"{where}: {count.strip()} row(s) as {reader}")
    finally:
        env = dict(os.environ, PGHOST=HOST, PGPORT=PORT)
        subprocess.run(["psql", "-X", "-q", "-U", SUPERUSER, "-d", "postgres",
                        "-c", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"],
                       capture_output=True, env=env, timeout=60)
        for role in (reader, monitor, bot, admin):
            subprocess.run(["psql", "-X", "-q", "-U", SUPERUSER, "-d", "postgres",
                            "-c", f"DROP ROLE IF EXISTS {role}"],
                           capture_output=True, env=env, timeout=60)
        subprocess.run(["rm", "-rf", tmp])
    print(f"  ok: {len(queries)} SQL queries of the dashboards run as the read-only role and return rows; throwaway database and roles dropped")


if __name__ == "__main__":
    main()
