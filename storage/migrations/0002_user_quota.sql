-- Per-user quotas count a user's messages of the last hour and day at every
-- MAIL FROM; this index answers that without scanning the queue.
CREATE INDEX messages_auth_user ON messages(auth_user, received_at);
