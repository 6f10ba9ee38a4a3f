-- rentabot state, schema version 2: the audit log (issue 11). Times are Unix
-- milliseconds (UTC). Never edit this file once released: add v3.sql.

-- One row per committed event (written in the transaction of its change) and per
-- refused request; the latest --audit-retention rows are kept, oldest first by `ord`.
-- Queries are answered from memory (the rows are read back at start), so no index but
-- the key, and no AUTOINCREMENT: each costs every commit a page write. Rows are only
-- deleted from the low end and never all (the retention is at least 1), so a new
-- `ord` is always above every one before it.
CREATE TABLE audit (
    ord            INTEGER PRIMARY KEY,
    at             INTEGER NOT NULL,
    event_type     TEXT    NOT NULL,         -- the event's type, or the refused operation
    resource_id    INTEGER,
    reservation_id TEXT,
    actor          TEXT    NOT NULL,         -- a key's name, system or anonymous
    role           TEXT,
    client_ip      TEXT,
    user_agent     TEXT,
    request_id     TEXT,
    success        INTEGER NOT NULL,
    details        TEXT    NOT NULL          -- JSON object
);
