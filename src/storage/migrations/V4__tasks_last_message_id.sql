-- The message of number `last_sent` (NULL before the first, and for rows
-- written before it was kept). A countdown resumed past Discord's nonce
-- window lists its channel after this message to see what is there already.
ALTER TABLE tasks ADD COLUMN IF NOT EXISTS last_message_id BIGINT;
