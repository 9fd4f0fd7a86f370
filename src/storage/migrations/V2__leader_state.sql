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
