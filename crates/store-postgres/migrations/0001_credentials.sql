-- offline-access: the credentials table (one row per Google user).
-- Tokens are stored only as ciphertext from the key ring ("v1.<key id>.<base64url>", AES-256-GCM, bound to the
-- subject and the column); the CHECKs refuse anything else, so a plaintext token can never land here.
CREATE TABLE credentials (
    subject           text COLLATE "C" PRIMARY KEY CHECK (length(subject) BETWEEN 1 AND 255),
    profile           jsonb NOT NULL,
    scopes            jsonb NOT NULL CHECK (jsonb_typeof(scopes) = 'array'),
    -- 'active', 'revoked', 'forgotten', ...: the domain's states; the store refuses unknown ones when reading.
    consent           text NOT NULL CHECK (consent ~ '^[a-z_]{1,32}$'),
    refresh_token     text CHECK (refresh_token LIKE 'v1.%'),
    access_token      text CHECK (access_token LIKE 'v1.%'),
    access_expires_at timestamptz,
    -- The key that sealed the refresh token (or, without one, the other tokens): what `keys rotate` looks at.
    key_id            text NOT NULL,
    version           bigint NOT NULL CHECK (version > 0),
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    CHECK ((access_token IS NULL) = (access_expires_at IS NULL))
);

-- `keys rotate` finds rows sealed under an older key without a full scan.
CREATE INDEX credentials_key_id ON credentials (key_id);
