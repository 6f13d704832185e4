-- The queue inspector sorts the whole queue by any column and pages through
-- it with a cursor (storage/admin.go, listQuery). Each order is read from an
-- index, so a page costs the same at any queue size instead of sorting
-- every matching recipient.
--
-- Recipient columns are indexed after the state: a listing of one state
-- walks that state's part of the index, and a listing of several states (or
-- of all) merges one walk per state. One index per column thus serves
-- every state filter.
--
-- The next try sorts mail that is not waiting (NULL) after every time. It
-- is a virtual column (computed when read, never stored) rather than an
-- indexed expression because SQLite reads the order of a page that
-- continues within one value ("next_try_order = ? AND id > ?") from the
-- index only for a column.
ALTER TABLE recipients ADD COLUMN next_try_order INTEGER
    GENERATED ALWAYS AS (ifnull(next_attempt, 9223372036854775807)) VIRTUAL;
--
-- Mail being sent is left out of these four: a claim (queued -> sending)
-- then only removes its entries and the attempt's result only adds them,
-- where keeping it would move each entry twice per delivery. The few
-- recipients being sent at a time are read through recipients_state and
-- sorted.
CREATE INDEX recipients_state_address  ON recipients(state, address COLLATE NOCASE) WHERE state <> 'sending';
CREATE INDEX recipients_state_attempts ON recipients(state, attempts) WHERE state <> 'sending';
CREATE INDEX recipients_state_next     ON recipients(state, next_try_order) WHERE state <> 'sending';
CREATE INDEX recipients_state_error    ON recipients(state, last_error COLLATE NOCASE) WHERE state <> 'sending';

-- Message columns are walked message by message, each message's
-- recipients in ID order (recipients_message). These change only when a
-- message arrives or goes, so they cost nothing on the delivery path.
CREATE INDEX messages_sender_sort  ON messages(sender COLLATE NOCASE);
CREATE INDEX messages_subject_sort ON messages(subject COLLATE NOCASE);
CREATE INDEX messages_size         ON messages(size);
CREATE INDEX messages_received     ON messages(received_at);
