-- Registrations are owned: owner is the SHA-256 digest of the lease token the registrar
-- issued to whoever registered the uid (X'' for rows written before this migration, or
-- registered without an owner: such a row is adopted by the next registration of its
-- uid). Only the owner may renew, change or unregister a live entry. Change rows carry
-- it too, so every registrar replaying the log checks the same owner.
ALTER TABLE entries ADD COLUMN owner BLOB NOT NULL DEFAULT X'';
ALTER TABLE changes ADD COLUMN owner BLOB;
