-- Messages: the envelope and facts of each accepted message. The body lives
-- in message_chunks so that a large message is written and read in pieces.
CREATE TABLE messages (
    id          INTEGER PRIMARY KEY,
    sender      TEXT    NOT NULL,              -- reverse path; '' is the null sender <>
    client_addr TEXT    NOT NULL DEFAULT '',
    client_helo TEXT    NOT NULL DEFAULT '',
    auth_user   TEXT    NOT NULL DEFAULT '',
    size        INTEGER NOT NULL DEFAULT 0,
    received_at INTEGER NOT NULL,              -- unix milliseconds
    not_before  INTEGER NOT NULL DEFAULT 0,    -- unix milliseconds; 0 = at once
    subject     TEXT    NOT NULL DEFAULT '',
    message_id  TEXT    NOT NULL DEFAULT '',
    eight_bit   INTEGER NOT NULL DEFAULT 0,
    smtputf8    INTEGER NOT NULL DEFAULT 0,
    is_dsn      INTEGER NOT NULL DEFAULT 0,    -- a delivery status notification of ours
    dkim        TEXT    NOT NULL DEFAULT ''    -- how the last delivery was signed
);
CREATE INDEX messages_sender ON messages(sender);

CREATE TABLE message_chunks (
    id         INTEGER PRIMARY KEY,
    message_id INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    seq        INTEGER NOT NULL,
    data       BLOB    NOT NULL
);
CREATE UNIQUE INDEX message_chunks_seq ON message_chunks(message_id, seq);

-- Recipients carry the delivery state; a message is done when all of its
-- recipients are final (sent, bounced, expired).
CREATE TABLE recipients (
    id           INTEGER PRIMARY KEY,
    message_id   INTEGER NOT NULL REFERENCES messages(id) ON DELETE CASCADE,
    address      TEXT    NOT NULL,
    domain       TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_attempt INTEGER,                      -- unix milliseconds; set exactly while the state is
                                               -- queued, deferred, scheduled or sending; else NULL
    last_code    INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT    NOT NULL DEFAULT '',
    next_hop     TEXT    NOT NULL DEFAULT '',
    held_reason  TEXT    NOT NULL DEFAULT '',
    updated_at   INTEGER NOT NULL,
    notify       INTEGER NOT NULL DEFAULT 0    -- 1 = the sender is owed a DSN for this recipient
);
-- The scheduler's only question: what is due next? Answered from this small
-- partial index, never by scanning the whole queue.
CREATE INDEX recipients_due ON recipients(next_attempt) WHERE next_attempt IS NOT NULL;
CREATE INDEX recipients_message ON recipients(message_id);
CREATE INDEX recipients_state ON recipients(state, id);
CREATE INDEX recipients_address ON recipients(address);
CREATE INDEX recipients_notify ON recipients(message_id) WHERE notify = 1;

-- Counts by state kept up to date by triggers, so the dashboard and
-- "queue list" totals cost one tiny read at any queue size.
CREATE TABLE state_counts (
    state TEXT PRIMARY KEY,
    n     INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TRIGGER recipients_count_insert AFTER INSERT ON recipients BEGIN
    INSERT INTO state_counts(state, n) VALUES (new.state, 1)
        ON CONFLICT(state) DO UPDATE SET n = n + 1;
END;
CREATE TRIGGER recipients_count_delete AFTER DELETE ON recipients BEGIN
    UPDATE state_counts SET n = n - 1 WHERE state = old.state;
END;
CREATE TRIGGER recipients_count_update AFTER UPDATE OF state ON recipients
    WHEN old.state <> new.state BEGIN
    UPDATE state_counts SET n = n - 1 WHERE state = old.state;
    INSERT INTO state_counts(state, n) VALUES (new.state, 1)
        ON CONFLICT(state) DO UPDATE SET n = n + 1;
END;

-- Every delivery attempt, for the queue inspector and for support.
CREATE TABLE attempts (
    id           INTEGER PRIMARY KEY,
    recipient_id INTEGER NOT NULL REFERENCES recipients(id) ON DELETE CASCADE,
    at           INTEGER NOT NULL,
    host         TEXT    NOT NULL DEFAULT '',
    code         INTEGER NOT NULL DEFAULT 0,
    text         TEXT    NOT NULL DEFAULT '',
    duration_ms  INTEGER NOT NULL DEFAULT 0,
    tls          TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX attempts_recipient ON attempts(recipient_id);

-- The settings document (TOML), every saved version kept.
CREATE TABLE settings (
    version  INTEGER PRIMARY KEY,
    document TEXT    NOT NULL,
    saved_at INTEGER NOT NULL
);

-- Per-minute counters for the dashboard's charts.
CREATE TABLE counters (
    name   TEXT    NOT NULL,
    bucket INTEGER NOT NULL,                   -- unix minute
    n      INTEGER NOT NULL,
    PRIMARY KEY (name, bucket)
) WITHOUT ROWID;

-- Small named values: the paused flag, the generated certificate.
CREATE TABLE kv (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
);

CREATE TABLE users (
    name          TEXT PRIMARY KEY,
    password_hash TEXT    NOT NULL,
    per_hour      INTEGER NOT NULL DEFAULT 0,
    per_day       INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
);

CREATE TABLE dkim_keys (
    domain      TEXT    NOT NULL,
    selector    TEXT    NOT NULL,
    algorithm   TEXT    NOT NULL,
    private_key BLOB    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (domain, selector)
);
