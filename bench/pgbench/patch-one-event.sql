-- A PATCH as the service runs it: the read, then one statement that stores one event and updates the row.
-- Variables: -D clients=C -D n=N (users 2..N); each client patches only its own users
-- (id = client_id + 2 mod C), so no two clients race for one.
\set id 2 + :client_id + :clients * random(0, (:n - 2 - :clients) / :clients)
SELECT id, email, first_name, last_name, organisation_id, is_admin, is_staff, is_active, is_email_verified, is_superuser, created, last_sequence, group_names, (SELECT version FROM group_catalog) AS catalog_version, password_hash FROM users WHERE id = ANY(ARRAY[1, :id]::bigint[]) ORDER BY id \aset
\set s1 :last_sequence + 1
\set fn random(1, 1000000)
WITH inserted AS (
            INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type,
                                event_version, payload, metadata)
            VALUES ('User', :id::bigint::text, :s1::bigint, 'FirstNameChanged'::text, '1'::text, ('{"FirstNameChanged": {"first_name": "F' || :fn || '"}}')::jsonb,
                    '{"actor_id": "1", "request_id": "0193a5b2-7c1d-7e4f-9a2b-3c4d5e6f7a8b", "source": "http"}'::jsonb)
            RETURNING 1)
UPDATE users
               SET email = :email, first_name = 'F' || :fn, last_name = :last_name, organisation_id = :organisation_id,
                   is_admin = :is_admin, is_staff = :is_staff, is_active = :is_active, is_email_verified = :is_email_verified,
                   is_superuser = :is_superuser, password_hash = :password_hash, last_sequence = :s1,
                   group_names = :group_names
             WHERE id = :id
            RETURNING (SELECT count(*) FROM inserted);
