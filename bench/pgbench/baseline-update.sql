-- The baseline's PATCH: one UPDATE (run on the baseline's database).
-- Variables: -D clients=C -D n=N (users 2..N); each client patches only its own users
-- (id = client_id + 2 mod C), so no two clients race for one.
\set id 2 + :client_id + :clients * random(0, (:n - 2 - :clients) / :clients)
\set fn random(1, 1000000)
UPDATE users SET first_name = COALESCE('F' || :fn, first_name), last_name = COALESCE('Patched', last_name) WHERE id = :id RETURNING id, email, first_name, last_name, organisation_id, is_admin, is_staff, is_active, is_email_verified, is_superuser, created;
