-- Every index on messages is written once for each message taken in, and
-- intake's share of the disk writes and of the CPU grows with their
-- number. Three of them did nothing that another index or the table's own
-- order does not already do:
--
--   - messages_received: messages get their IDs in the order they arrive,
--     and received_at is the moment of arrival, so the listing's "received"
--     order walks the table by ID (listing.go).
--   - messages_sender: the exact sender filter reads messages_sender_sort
--     (the same column, without regard to case) and checks the exact
--     address on the few rows it finds.
--   - messages_auth_user held an entry for every message, though only
--     mail from a logged-in user is ever counted against a quota; now only
--     that mail has one.
DROP INDEX messages_received;
DROP INDEX messages_sender;
DROP INDEX messages_auth_user;
CREATE INDEX messages_auth_user ON messages(auth_user, received_at) WHERE auth_user <> '';
