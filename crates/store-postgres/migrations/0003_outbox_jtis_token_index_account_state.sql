-- offline-access: the account's state (Google disabled it; refreshes keep failing), the refresh-token index keys for
-- RISC lookups, the outbox of events for the team's webhook, and the register of RISC `jti`s already acted on.
-- Only additions (nullable columns, new tables, indexes): instances of the previous release keep working meanwhile.

-- Set while Google has disabled the account (RISC `account-disabled`), with Google's reason when it gave one;
-- since when refreshes have kept failing with Google unavailable. NULL on rows written before this migration.
-- The index keys of the stored refresh token (`risc::index_keys`: hex SHA-256 digests, one of its 16-character
-- prefix and one of its double SHA-512, each under its own label), so a RISC `token-revoked` event finds its user
-- through an index. Never the token or its prefix in clear. NULL without a refresh token; rows written before this
-- migration get theirs from `migrate` (which decrypts their refresh token).
ALTER TABLE credentials
    ADD COLUMN disabled_since timestamptz,
    ADD COLUMN disabled_reason text,
    ADD COLUMN refresh_failing_since timestamptz,
    ADD COLUMN rt_prefix_key text CHECK (rt_prefix_key ~ '^[0-9a-f]{64}$'),
    ADD COLUMN rt_hash_key text CHECK (rt_hash_key ~ '^[0-9a-f]{64}$'),
    ADD CONSTRAINT credentials_disabled_reason CHECK (disabled_reason IS NULL OR disabled_since IS NOT NULL);

CREATE INDEX credentials_rt_prefix_key ON credentials (rt_prefix_key) WHERE rt_prefix_key IS NOT NULL;
CREATE INDEX credentials_rt_hash_key ON credentials (rt_hash_key) WHERE rt_hash_key IS NOT NULL;

-- The outbox: each event written in the same statement as the credential change it reports (or on its own), then
-- delivered at least once. `body` is the exact JSON POSTed on every attempt; no token is ever in it.
CREATE TABLE outbox (
    id              text COLLATE "C" PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 64),
    kind            text NOT NULL,
    created_at      timestamptz NOT NULL,
    body            text NOT NULL,
    state           text NOT NULL CHECK (state IN ('pending', 'delivered', 'failed')),
    attempts        integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at timestamptz NOT NULL,
    -- A claimer's lease: the event is not claimed again before this (a claimer that dies leaves it to expire).
    lease_until     timestamptz,
    last_error      text,
    delivered_at    timestamptz
);

-- Claiming: the due pending events in order, without reading delivered or failed ones.
CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE state = 'pending';
-- Purging delivered events by age; listing the failed ones.
CREATE INDEX outbox_delivered ON outbox (delivered_at) WHERE state = 'delivered';
CREATE INDEX outbox_failed ON outbox (id) WHERE state = 'failed';

-- RISC `jti`s acted on (a duplicate Security Event Token is acted on once), kept for the retention and then purged.
CREATE TABLE risc_jtis (
    jti     text COLLATE "C" PRIMARY KEY,
    seen_at timestamptz NOT NULL
);

CREATE INDEX risc_jtis_seen_at ON risc_jtis (seen_at);
