-- The registry table: one row per registered uid (name, uuid).
-- addrs is a JSON array of [host, port] / [directory, filename] pairs, latest last.
-- revision is the store revision of the uid's latest (re-)registration; times are
-- wall-clock seconds (leases expire by expires_at).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
INSERT INTO meta (key, value) VALUES ('revision', 0);

CREATE TABLE entries (
    name          TEXT NOT NULL,
    uuid          TEXT NOT NULL,
    addrs         TEXT NOT NULL,
    revision      INTEGER NOT NULL,
    registered_at REAL NOT NULL,
    expires_at    REAL NOT NULL,
    registrar     TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (name, uuid)
);
CREATE INDEX entries_by_revision ON entries (revision);
