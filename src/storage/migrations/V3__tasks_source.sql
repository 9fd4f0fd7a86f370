-- Where the command came from: mention, dm or slash. Rows from before it
-- was kept were all mentions. Resuming needs nothing more: the Stop
-- button's custom id is `stop:<id>`, and `user_id` is who started it
-- (STOP_POLICY).
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS source TEXT NOT NULL DEFAULT 'mention';
