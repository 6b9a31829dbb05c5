-- offline-access: versions that never repeat, pending revocations by index, the access token's own scopes.

-- A record's version is `epoch << 32 | count`: a first write takes a new epoch from this sequence (count 1), every
-- later write adds one. Epochs are never handed out twice, so a subject's versions never repeat, also across a
-- delete and a later first write: a writer that read before the delete can never overwrite the new record. Rows
-- written before this migration are in epoch 0 and keep their versions; new epochs start above them.
CREATE SEQUENCE credentials_version AS bigint MINVALUE 0 MAXVALUE 2147483647 START 0;
SELECT setval('credentials_version', COALESCE((SELECT (max(version) >> 32) + 1 FROM credentials), 0), false);

-- The scopes of the cached access token (the `scopes` column is the grant's). NULL on rows written before this
-- migration, which read as the grant's scopes. Not tied to `access_token` by a CHECK, so an instance of the
-- previous release (which does not know the column) can still write during a rolling upgrade.
ALTER TABLE credentials
    ADD COLUMN access_scopes jsonb CHECK (access_scopes IS NULL OR jsonb_typeof(access_scopes) = 'array');

-- Pending revocations (users who asked to be forgotten while Google could not confirm the revocation), in subject
-- order, without reading any other row.
CREATE INDEX credentials_forgotten ON credentials (subject) WHERE consent = 'forgotten';
