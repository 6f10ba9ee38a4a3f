-- rentabot state on PostgreSQL, schema version 1: the tables of ../v1.sql in PostgreSQL
-- types. Times are Unix milliseconds (UTC, BIGINT); lists are JSONB. Never edit this
-- file once released: add the next version and append it to postgres.rs' MIGRATIONS.
-- The versions follow SQLite's, so that version N means the same rows on both.

-- What tells a rentabot schema from any other, and its version (SQLite keeps these in
-- PRAGMA application_id and user_version). One row. The HA pair's epoch will go here.
CREATE TABLE rentabot_meta (
    id             INTEGER PRIMARY KEY CHECK (id = 1),
    application    TEXT    NOT NULL CHECK (application = 'rentabot'),
    schema_version INTEGER NOT NULL
);
INSERT INTO rentabot_meta VALUES (1, 'rentabot', 0);

-- One row: the stream position and the counters that never go back. `commits` counts
-- transactions: every commit moves it by exactly one, from the value the writer last
-- saw, so a commit whose outcome was lost with its connection can be told apart (it
-- landed if the counter moved) and a second writer's commits are refused.
CREATE TABLE state (
    id                   INTEGER PRIMARY KEY CHECK (id = 1),
    stream_seq           BIGINT  NOT NULL,  -- last committed change
    next_event           BIGINT  NOT NULL,  -- number of the next event (SSE id)
    next_resource_id     BIGINT  NOT NULL,
    next_fencing         BIGINT  NOT NULL,
    next_reservation_seq BIGINT  NOT NULL,
    commits              BIGINT  NOT NULL
);
INSERT INTO state VALUES (1, 0, 1, 1, 1, 0, 0);

CREATE TABLE resources (
    id               BIGINT  PRIMARY KEY,
    name             TEXT    NOT NULL,
    description      TEXT    NOT NULL,
    endpoint         TEXT    NOT NULL,
    tags             JSONB   NOT NULL,       -- array, declaration order
    max_lock_secs    BIGINT  NOT NULL,
    origin           TEXT    NOT NULL,       -- descriptor | api
    retiring         BOOLEAN NOT NULL,
    lock_token       TEXT,                   -- NULL when free
    lock_fencing     BIGINT,
    lock_acquired_at BIGINT,
    lock_expires_at  BIGINT,
    lock_reservation TEXT,
    lock_holder      TEXT,
    lock_note        TEXT,
    released         TEXT,                   -- when free: never | unlocked | expired | force_unlocked
    released_at      BIGINT,
    released_reason  TEXT,
    maint_reason     TEXT,                   -- NULL when no maintenance window
    maint_from       BIGINT,
    maint_until      BIGINT,
    maint_active     BOOLEAN
);

CREATE TABLE reservations (
    id               TEXT    PRIMARY KEY,    -- res_ + 32 hex digits
    seq              BIGINT  NOT NULL,       -- creation order
    groups           JSONB   NOT NULL,       -- [{"tags": [..]} | {"expr": ".."}, "quantity"]
    priority         BIGINT  NOT NULL,
    ttl_secs         BIGINT  NOT NULL,
    max_wait_secs    BIGINT  NOT NULL,
    auto_claim       BOOLEAN NOT NULL,
    holder           TEXT,
    note             TEXT,
    created_at       BIGINT  NOT NULL,
    expires_at       BIGINT  NOT NULL,
    status           TEXT    NOT NULL,       -- pending | fulfilled | claimed
    fulfilled_at     BIGINT,
    claim_expires_at BIGINT,
    claimed_at       BIGINT,
    allocations      JSONB   NOT NULL,       -- [{"group", "resource", "token"}]
    next_aging       BIGINT                  -- when a pending one next improves its priority
);

-- Recently ended reservations (a late claim gets 410), newest last. `ord` is given by
-- the writer (the highest plus one), not by a sequence: no gaps, so that trimming to
-- the last N by `ord` keeps N rows.
CREATE TABLE ended (
    ord    BIGINT PRIMARY KEY,
    id     TEXT   NOT NULL,
    reason TEXT   NOT NULL,
    at     BIGINT NOT NULL
);

-- The latest auto-expired locks (GET /api/v1/resources/expired), newest last.
CREATE TABLE expired_locks (
    ord         BIGINT PRIMARY KEY,
    resource    BIGINT NOT NULL,
    name        TEXT   NOT NULL,
    fencing     BIGINT NOT NULL,
    acquired_at BIGINT NOT NULL,
    expired_at  BIGINT NOT NULL,
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
    fingerprint BYTEA   NOT NULL,
    status      INTEGER NOT NULL,
    headers     JSONB   NOT NULL,            -- [[name, value], ..]
    body        BYTEA   NOT NULL,
    expires_at  BIGINT  NOT NULL,
    PRIMARY KEY (owner, method, path, key)
);
CREATE INDEX idempotency_expiry ON idempotency (expires_at);
