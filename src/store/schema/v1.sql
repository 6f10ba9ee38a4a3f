-- rentabot state, schema version 1. Times are Unix milliseconds (UTC); lists are JSON.
-- Never edit this file once released: add v2.sql and append it to MIGRATIONS.

-- One row: the stream position and the counters that never go back.
CREATE TABLE state (
    id                   INTEGER PRIMARY KEY CHECK (id = 1),
    stream_seq           INTEGER NOT NULL,  -- last committed change
    next_event           INTEGER NOT NULL,  -- number of the next event (SSE id)
    next_resource_id     INTEGER NOT NULL,
    next_fencing         INTEGER NOT NULL,
    next_reservation_seq INTEGER NOT NULL
);
INSERT INTO state VALUES (1, 0, 1, 1, 1, 0);

CREATE TABLE resources (
    id               INTEGER PRIMARY KEY,
    name             TEXT    NOT NULL,
    description      TEXT    NOT NULL,
    endpoint         TEXT    NOT NULL,
    tags             TEXT    NOT NULL,       -- JSON array, declaration order
    max_lock_secs    INTEGER NOT NULL,
    origin           TEXT    NOT NULL,       -- descriptor | api
    retiring         INTEGER NOT NULL,
    lock_token       TEXT,                   -- NULL when free
    lock_fencing     INTEGER,
    lock_acquired_at INTEGER,
    lock_expires_at  INTEGER,
    lock_reservation TEXT,
    lock_holder      TEXT,
    lock_note        TEXT,
    released         TEXT,                   -- when free: never | unlocked | expired | force_unlocked
    released_at      INTEGER,
    released_reason  TEXT,
    maint_reason     TEXT,                   -- NULL when no maintenance window
    maint_from       INTEGER,
    maint_until      INTEGER,
    maint_active     INTEGER
);

CREATE TABLE reservations (
    id               TEXT    PRIMARY KEY,    -- res_ + 32 hex digits
    seq              INTEGER NOT NULL,       -- creation order
    groups           TEXT    NOT NULL,       -- JSON [{"tags": [..]} | {"expr": ".."}, "quantity"]
    priority         INTEGER NOT NULL,
    ttl_secs         INTEGER NOT NULL,
    max_wait_secs    INTEGER NOT NULL,
    auto_claim       INTEGER NOT NULL,
    holder           TEXT,
    note             TEXT,
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,
    status           TEXT    NOT NULL,       -- pending | fulfilled | claimed
    fulfilled_at     INTEGER,
    claim_expires_at INTEGER,
    claimed_at       INTEGER,
    allocations      TEXT    NOT NULL,       -- JSON [{"group", "resource", "token"}]
    next_aging       INTEGER                 -- when a pending one next improves its priority
);

-- Recently ended reservations (a late claim gets 410), newest last.
CREATE TABLE ended (
    ord    INTEGER PRIMARY KEY AUTOINCREMENT,
    id     TEXT    NOT NULL,
    reason TEXT    NOT NULL,
    at     INTEGER NOT NULL
);

-- The latest auto-expired locks (GET /api/v1/resources/expired), newest last.
CREATE TABLE expired_locks (
    ord         INTEGER PRIMARY KEY AUTOINCREMENT,
    resource    INTEGER NOT NULL,
    name        TEXT    NOT NULL,
    fencing     INTEGER NOT NULL,
    acquired_at INTEGER NOT NULL,
    expired_at  INTEGER NOT NULL,
    reservation TEXT,
    holder      TEXT,
    note        TEXT
);

-- Remembered Idempotency-Key answers, committed with the change they guard.
CREATE TABLE idempotency (
    owner       TEXT    NOT NULL,
    method      TEXT    NOT NULL,
    path        TEXT    NOT NULL,
    key         TEXT    NOT NULL,
    fingerprint BLOB    NOT NULL,
    status      INTEGER NOT NULL,
    headers     TEXT    NOT NULL,            -- JSON [[name, value], ..]
    body        BLOB    NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (owner, method, path, key)
);
CREATE INDEX idempotency_expiry ON idempotency (expires_at);
