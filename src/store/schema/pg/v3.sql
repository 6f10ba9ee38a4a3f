-- rentabot state on PostgreSQL, schema version 3: who owns each lock and reservation
-- (issue 11), as ../v3.sql. ADD COLUMN only. Never edit this file once released.
ALTER TABLE resources ADD COLUMN lock_owner TEXT;
ALTER TABLE reservations ADD COLUMN owner TEXT;
ALTER TABLE expired_locks ADD COLUMN owner TEXT;
