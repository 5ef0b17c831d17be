-- The event store: postgres-es's `events` and `snapshots` tables (jsonb payloads), plus
-- columns postgres-es never writes: a global order, the commit time and the writing
-- transaction, so a reader following the log can tell what is safe to read.
CREATE TABLE events
(
    aggregate_type  text                         NOT NULL,
    aggregate_id    text                         NOT NULL,
    sequence        bigint CHECK (sequence >= 0) NOT NULL,
    event_type      text                         NOT NULL,
    event_version   text                         NOT NULL,
    payload         jsonb                        NOT NULL,
    metadata        jsonb                        NOT NULL,
    global_position bigint GENERATED ALWAYS AS IDENTITY,
    recorded_at     timestamptz                  NOT NULL DEFAULT now(),
    transaction_id  xid8                         NOT NULL DEFAULT pg_current_xact_id(),
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
);
CREATE UNIQUE INDEX events_global_position ON events (global_position);

CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          jsonb                                NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id)
);

-- Public user ids: taken before the Create command, so the aggregate id is known up front.
CREATE SEQUENCE user_ids AS bigint START 1;

-- Set-level invariant implied by the events: one user per email, ignoring case. Written in
-- the same transaction as the events, so a failed create leaves the email free.
CREATE TABLE email_claims
(
    email   text   PRIMARY KEY CHECK (email = lower(email)),
    user_id bigint NOT NULL UNIQUE
);
