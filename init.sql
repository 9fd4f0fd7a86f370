-- countdown's schema as it is now, in one file: what PostgreSQL's docker
-- entrypoint creates on a new volume (docker/db-init-roles.sh). The bot
-- applies the versioned migrations of src/storage/migrations/ at every
-- start; they build this same schema (tests/storage_postgres.rs compares
-- the two) and apply cleanly over it (IF NOT EXISTS), so a database made
-- from this file is then migrated like any other.

-- One row per accepted `count to N`.
CREATE TABLE IF NOT EXISTS tasks (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel_id  BIGINT      NOT NULL,
    guild_id    BIGINT,                       -- NULL for a DM
    user_id     BIGINT      NOT NULL,         -- who asked
    target      INTEGER     NOT NULL CHECK (target BETWEEN 1 AND 9999),
    last_sent   INTEGER     NOT NULL DEFAULT 0 CHECK (last_sent BETWEEN 0 AND target),
    status      TEXT        NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'finished', 'stopped', 'failed', 'expired')),
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),  -- number 1 was due then
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now(),  -- last progress or status change
    finished_at TIMESTAMPTZ,
    -- Where the command came from: mention, dm or slash. Resuming needs
    -- nothing more: the Stop button's custom id is `stop:<id>`, and
    -- `user_id` is who started it (STOP_POLICY).
    source      TEXT        NOT NULL DEFAULT 'mention',
    -- The message of number `last_sent` (NULL before the first, and for
    -- rows written before it was kept). A countdown resumed past Discord's
    -- nonce window lists its channel after this message to see what is
    -- there already.
    last_message_id BIGINT,
    CHECK ((status = 'running') = (finished_at IS NULL))
);

-- "One countdown per channel", held by the database itself. It also serves
-- the resume query (WHERE status = 'running').
CREATE UNIQUE INDEX IF NOT EXISTS tasks_one_running_per_channel
    ON tasks (channel_id) WHERE status = 'running';
CREATE INDEX IF NOT EXISTS tasks_created_at ON tasks (created_at);

-- Every command that was not carried out, and every failure while carrying one out.
CREATE TABLE IF NOT EXISTS command_errors (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind        TEXT        NOT NULL,  -- invalid, busy_channel, not_counting, not_allowed, busy_guild, busy_bot, db_unavailable, send_failed
    channel_id  BIGINT      NOT NULL,
    guild_id    BIGINT,
    user_id     BIGINT,
    content     TEXT,                  -- the command text, truncated
    error       TEXT        NOT NULL,
    task_id     BIGINT REFERENCES tasks (id) ON DELETE SET NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS command_errors_created_at ON command_errors (created_at);

-- Failures not tied to a command: gateway, database connectivity, resume.
CREATE TABLE IF NOT EXISTS general_errors (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    context     TEXT        NOT NULL,
    error       TEXT        NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS general_errors_created_at ON general_errors (created_at);

-- Leadership among instances sharing this database (README: "Running more
-- than one instance"). The leader holds a session advisory lock; each new
-- leader bumps `epoch`, and progress writes carry the writer's epoch, so a
-- deposed leader's late writes change nothing. `clean` says the last leader
-- stepped down after it had stopped sending.
CREATE TABLE IF NOT EXISTS leader_state (
    id      BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    epoch   BIGINT      NOT NULL DEFAULT 0,
    holder  TEXT,
    clean   BOOLEAN     NOT NULL DEFAULT true,
    since   TIMESTAMPTZ NOT NULL DEFAULT now()
);
INSERT INTO leader_state (id) VALUES (true) ON CONFLICT DO NOTHING;
