-- The read model. Every GET reads only from here; it is written from events in the same
-- transaction as the events themselves and can be rebuilt from the log at any time.

CREATE TABLE permissions
(
    codename text PRIMARY KEY,
    name     text NOT NULL
);

CREATE TABLE groups
(
    name text PRIMARY KEY
);

CREATE TABLE group_permissions
(
    group_name text NOT NULL REFERENCES groups (name) ON UPDATE CASCADE ON DELETE CASCADE,
    codename   text NOT NULL REFERENCES permissions (codename) ON DELETE CASCADE,
    PRIMARY KEY (group_name, codename)
);

INSERT INTO permissions (codename, name)
VALUES ('view_user', 'Can view user'),
       ('add_user', 'Can add user'),
       ('change_user', 'Can change user'),
       ('delete_user', 'Can delete user');

INSERT INTO groups (name) VALUES ('admin'), ('viewer');

INSERT INTO group_permissions (group_name, codename)
VALUES ('admin', 'view_user'),
       ('admin', 'add_user'),
       ('admin', 'change_user'),
       ('admin', 'delete_user'),
       ('viewer', 'view_user');

CREATE TABLE users
(
    id                bigint      PRIMARY KEY,
    email             text        NOT NULL,
    first_name        text        NOT NULL,
    last_name         text        NOT NULL,
    organisation_id   bigint,
    is_admin          boolean     NOT NULL,
    is_staff          boolean     NOT NULL,
    is_active         boolean     NOT NULL,
    is_email_verified boolean     NOT NULL,
    is_superuser      boolean     NOT NULL,
    -- Needed by login; never selected into a response.
    password_hash     text        NOT NULL,
    created           timestamptz NOT NULL,
    -- Sequence of the last event applied: re-applying an event is a no-op.
    last_sequence     bigint      NOT NULL
);
CREATE INDEX users_email_lower ON users (lower(email));
CREATE INDEX users_organisation ON users (organisation_id, id);

-- Group names as the events record them; a group deleted later simply stops being shown.
CREATE TABLE user_groups
(
    user_id    bigint NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    group_name text   NOT NULL,
    PRIMARY KEY (user_id, group_name)
);
