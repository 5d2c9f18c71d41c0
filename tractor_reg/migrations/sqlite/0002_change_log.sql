-- A change log that lets every registrar process sharing the file keep its in-memory
-- view coherent by replaying the rows committed since it last looked (and lets watchers
-- resume from a revision). kind is 'upsert' (the row's new full state) or 'delete'.
-- store_revision is the store revision once the change was committed; reason says what
-- caused it (register, unregister, renew, expire, evict, delete_addr).
CREATE TABLE changes (
    seq            INTEGER PRIMARY KEY AUTOINCREMENT,
    store_revision INTEGER NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('upsert', 'delete')),
    name           TEXT NOT NULL,
    uuid           TEXT NOT NULL,
    addrs          TEXT,
    revision       INTEGER,
    registered_at  REAL,
    expires_at     REAL,
    registrar      TEXT,
    reason         TEXT NOT NULL DEFAULT '',
    committed_at   REAL NOT NULL
);
CREATE INDEX entries_by_name ON entries (name, revision);
