-- The service's read for a PATCH: the caller (id 1) and the target, one statement.
-- Variables: -D clients=C -D n=N (users 2..N); each client patches only its own users
-- (id = client_id + 2 mod C), so no two clients race for one.
\set id 2 + :client_id + :clients * random(0, (:n - 2 - :clients) / :clients)
SELECT id, email, first_name, last_name, organisation_id, is_admin, is_staff, is_active, is_email_verified, is_superuser, created, last_sequence, group_names, (SELECT version FROM group_catalog) AS catalog_version, password_hash FROM users WHERE id = ANY(ARRAY[1, :id]::bigint[]) ORDER BY id \aset
