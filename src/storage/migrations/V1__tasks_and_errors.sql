-- The first schema: countdowns and the errors of commands and of the bot.
-- IF NOT EXISTS throughout: a database made before migrations were
-- versioned has these tables already, and so does one that PostgreSQL's
-- docker entrypoint made from init.sql.

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
    kind        TEXT        NOT NULL,  -- invalid, busy_channel, not_counting, busy_guild, busy_bot, db_unavailable, send_failed
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
