-- The bulk import of bench/run and bench/seed: what the service's write path would have
-- stored for seeded users, as plain SQL. Variables (psql -v): hash (an argon2id PHC string
-- the service made), seed_first..seed_last (users with one `Created` event each),
-- hist_first..hist_last with hist_events events each (`Created`, then alternating
-- `FirstNameChanged`). Run in one transaction (psql -1), then `projections rebuild`.
-- Exactly the shapes the service stores (domain/src/user/events.rs, event_version "1";
-- metadata as the CLI writes it: this is an import, not an HTTP request).
\set meta '{"source": "cli", "actor_id": "system", "request_id": "bench-import"}'
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT 'User', i::text, 1, 'Created', '1',
       jsonb_build_object('Created', jsonb_build_object(
         'email', 'user' || i || '@bench.test', 'first_name', 'First' || i, 'last_name', 'Last' || i,
         'organisation_id', 1 + i % 100, 'is_admin', false, 'is_staff', false, 'is_superuser', false,
         'groups', jsonb_build_array('viewer'), 'password_hash', :'hash')),
       :'meta'::jsonb
  FROM generate_series(:seed_first, :seed_last) AS i
 ORDER BY i;
-- Long-history users: Created, then first_name alternating Even/Odd (each event a real change).
INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
SELECT 'User', u::text, s, CASE s WHEN 1 THEN 'Created' ELSE 'FirstNameChanged' END, '1',
       CASE s WHEN 1 THEN jsonb_build_object('Created', jsonb_build_object(
                'email', 'hist' || u || '@bench.test', 'first_name', 'Hist' || u, 'last_name', 'Last' || u,
                'organisation_id', 1, 'is_admin', false, 'is_staff', false, 'is_superuser', false,
                'groups', jsonb_build_array('viewer'), 'password_hash', :'hash'))
              ELSE jsonb_build_object('FirstNameChanged', jsonb_build_object(
                'first_name', CASE WHEN s % 2 = 0 THEN 'Even' ELSE 'Odd' END)) END,
       :'meta'::jsonb
  FROM generate_series(:hist_first, :hist_last) AS u, generate_series(1, :hist_events) AS s
 ORDER BY u, s;
-- What persist() writes beside the events: the email claims (lower-cased address).
INSERT INTO email_claims (email, user_id)
SELECT lower(payload -> 'Created' ->> 'email'), aggregate_id::bigint
  FROM events WHERE event_type = 'Created' AND aggregate_id::bigint BETWEEN :seed_first AND :hist_last;
-- Ids come from this sequence: the next POST gets hist_last + 1.
SELECT setval('user_ids', :hist_last) \g /dev/null
