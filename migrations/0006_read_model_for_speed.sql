-- What makes reads one round trip and list counts O(1):
-- 1. `users.group_names`: the user's groups (sorted) on the row itself, beside the
--    relational `user_groups`; permissions come from the groups catalog, which the service
--    caches and re-reads when `group_catalog.version` moves.
-- 2. `user_counts`: users per organisation (0 stands for none), kept by the same
--    transaction that writes the row, so a list page never counts rows.
ALTER TABLE users ADD COLUMN group_names text[] NOT NULL DEFAULT '{}';
UPDATE users u
   SET group_names = g.names
  FROM (SELECT user_id, array_agg(group_name ORDER BY group_name COLLATE "C") AS names
          FROM user_groups GROUP BY user_id) g
 WHERE g.user_id = u.id;

CREATE TABLE group_catalog
(
    only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    version  bigint  NOT NULL
);
INSERT INTO group_catalog (version) VALUES (1);

CREATE FUNCTION bump_group_catalog() RETURNS trigger LANGUAGE plpgsql AS
$$
BEGIN
    UPDATE group_catalog SET version = version + 1;
    RETURN NULL;
END
$$;
CREATE TRIGGER groups_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON groups
    FOR EACH STATEMENT EXECUTE FUNCTION bump_group_catalog();
CREATE TRIGGER group_permissions_changed
    AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON group_permissions
    FOR EACH STATEMENT EXECUTE FUNCTION bump_group_catalog();
CREATE TRIGGER permissions_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON permissions
    FOR EACH STATEMENT EXECUTE FUNCTION bump_group_catalog();

CREATE TABLE user_counts
(
    organisation_id bigint PRIMARY KEY,
    users           bigint NOT NULL
);
INSERT INTO user_counts (organisation_id, users)
SELECT coalesce(organisation_id, 0), count(*) FROM users GROUP BY 1;
