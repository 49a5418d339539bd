-- Virtual keys made at run time (POST /api/keys): one row per key, the document as serde_json
-- wrote it; the digest is unique, so one secret can never belong to two keys.
CREATE TABLE llmopt_keys (
    id         text   PRIMARY KEY,
    sha256     text   NOT NULL UNIQUE,
    revoked_ms bigint,
    body       text   NOT NULL
);
