-- The read, then only the users-row UPDATE of the write (no event): what the row costs.
-- Variables: -D clients=C -D n=N (users 2..N); each client patches only its own users
-- (id = client_id + 2 mod C), so no two clients race for one.
\set id 2 + :client_id + :clients * random(0, (:n - 2 - :clients) / :clients)
SELECT id, email, first_name, last_name, organisation_id, is_admin, is_staff, is_active, is_email_verified, is_superuser, created, last_sequence, group_names, (SELECT version FROM group_catalog) AS catalog_version, password_hash FROM users WHERE id = ANY(ARRAY[1, :id]::bigint[]) ORDER BY id \aset
\set s1 :last_sequence + 1
\set fn random(1, 1000000)
UPDATE users
               SET email = :email, first_name = 'F' || :fn, last_name = :last_name, organisation_id = :organisation_id,
                   is_admin = :is_admin, is_staff = :is_staff, is_active = :is_active, is_email_verified = :is_email_verified,
                   is_superuser = :is_superuser, password_hash = :password_hash, last_sequence = :s1,
                   group_names = :group_names
             WHERE id = :id
            RETURNING 1;
