-- rentabot state on PostgreSQL, schema version 2: the audit log (issue 11), as ../v2.sql.
-- Never edit this file once released.

-- One row per committed event (written in the transaction of its change) and per
-- refused request; the latest --audit-retention rows are kept, oldest first by `ord`,
-- which the writer gives (the highest plus one). `details` is TEXT, not JSONB: JSONB
-- reorders an object's keys, and a record shows them in the order they were written.
CREATE TABLE audit (
    ord            BIGINT  PRIMARY KEY,
    at             BIGINT  NOT NULL,
    event_type     TEXT    NOT NULL,         -- the event's type, or the refused operation
    resource_id    BIGINT,
    reservation_id TEXT,
    actor          TEXT    NOT NULL,         -- a key's name, system or anonymous
    role           TEXT,
    client_ip      TEXT,
    user_agent     TEXT,
    request_id     TEXT,
    success        BOOLEAN NOT NULL,
    details        TEXT    NOT NULL          -- a JSON object
);
