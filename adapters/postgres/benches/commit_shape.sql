-- pgbench script with the shape of one Stratos commit: compare-and-swap on the actor's root row,
-- 9 new blocks (random 32-byte keys, ~300 bytes), 8 removed blocks, one record row, one event,
-- one outbox row. One root row per client, so clients never contend (like one writer per actor).
-- Setup: benches/commit_shape_setup.sql. Run:
--   pgbench -n -h 127.0.0.1 -U postgres -c 8 -j 2 -T 20 -f benches/commit_shape.sql test
\set r random(1, 2000000000)
BEGIN;
UPDATE bench_root SET rev = rev + 1 WHERE id = :client_id;
INSERT INTO bench_block (cid, content) VALUES
  (sha256(('1-' || :client_id || '-' || :r)::bytea), convert_to(repeat('x', 300), 'UTF8')),
  (sha256(('2-' || :client_id || '-' || :r)::bytea), convert_to(repeat('x', 300), 'UTF8')),
  (sha256(('3-' || :client_id || '-' || :r)::bytea), convert_to(repeat('x', 300), 'UTF8')),
  (sha256(('4-' || :client_id || '-' || :r)::bytea), convert_to(repeat('x', 300), 'UTF8')),
  (sha256(('5-' || :client_id || '-' || :r)::bytea), convert_to(repeat('x', 300), 'UTF8')),
  (sha256(('6-' || :client_id || '-' || :r)::bytea), convert_to(repeat('x', 300), 'UTF8')),
  (sha256(('7-' || :client_id || '-' || :r)::bytea), convert_to(repeat('x', 300), 'UTF8')),
  (sha256(('8-' || :client_id || '-' || :r)::bytea), convert_to(repeat('x', 300), 'UTF8')),
  (sha256(('9-' || :client_id || '-' || :r)::bytea), convert_to(repeat('x', 300), 'UTF8'))
  ON CONFLICT (cid) DO NOTHING;
DELETE FROM bench_block WHERE cid IN (sha256(('old1-' || :r)::bytea), sha256(('old2-' || :r)::bytea),
  sha256(('old3-' || :r)::bytea), sha256(('old4-' || :r)::bytea), sha256(('old5-' || :r)::bytea),
  sha256(('old6-' || :r)::bytea), sha256(('old7-' || :r)::bytea), sha256(('old8-' || :r)::bytea));
INSERT INTO bench_record (client, rkey, cid, boundaries)
  VALUES (:client_id, :r::text, sha256(('1-' || :client_id || '-' || :r)::bytea), ARRAY['did:web:s/even'])
  ON CONFLICT (client, rkey) DO UPDATE SET cid = excluded.cid;
INSERT INTO bench_event (client, ops) VALUES (:client_id, convert_to(repeat('y', 200), 'UTF8'));
INSERT INTO bench_outbox (client, item, due_ms) VALUES (:client_id, convert_to(repeat('z', 400), 'UTF8'), 0);
COMMIT;
