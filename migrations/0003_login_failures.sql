-- Failed logins, for throttling by email and by client address. Shared by every instance;
-- rows older than the throttle window are deleted as new failures come in.
CREATE TABLE login_failures
(
    key       text        NOT NULL,
    failed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX login_failures_key_time ON login_failures (key, failed_at DESC);
