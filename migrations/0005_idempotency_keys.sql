-- Idempotency-Key on POST /api/v1/users: one row per (caller, key), kept 24 hours. The
-- body is stored only as a keyed hash (it holds a password); the user id is taken before
-- the create runs, so a create that committed before a crash is found again by it.
CREATE TABLE idempotency_keys
(
    caller_id   bigint      NOT NULL,
    key         text        NOT NULL,
    fingerprint bytea       NOT NULL,
    user_id     bigint      NOT NULL,
    response    jsonb,
    version     bigint,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (caller_id, key)
);
CREATE INDEX idempotency_keys_created_at ON idempotency_keys (created_at);
