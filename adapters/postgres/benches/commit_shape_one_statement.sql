-- The same transaction as benches/commit_shape.sql (same rows written, deleted and returned), in
-- the round trips the adapter's commit uses for a unit of creates: `BEGIN` with `SET LOCAL
-- search_path` in one simple query, one statement whose parts are gated on the root's
-- compare-and-swap, `COMMIT`. A reference for what the shape of the statements is worth; the
-- target compares with commit_shape.sql. Setup: benches/commit_shape_setup.sql. Run:
--   pgbench -n -h 127.0.0.1 -U postgres -c 8 -j 2 -T 20 -f benches/commit_shape_one_statement.sql test
\set r random(1, 2000000000)
BEGIN \; SET LOCAL search_path TO public;
WITH root AS (UPDATE bench_root SET rev = rev + 1 WHERE id = :client_id RETURNING 1),
  blocks AS (INSERT INTO bench_block (cid, content)
    SELECT sha256((g || '-' || :client_id || '-' || :r)::bytea), convert_to(repeat('x', 300), 'UTF8')
    FROM generate_series(1, 9) g WHERE EXISTS (SELECT 1 FROM root) ON CONFLICT (cid) DO NOTHING),
  removed AS (DELETE FROM bench_block WHERE cid IN (sha256(('old1-' || :r)::bytea),
    sha256(('old2-' || :r)::bytea), sha256(('old3-' || :r)::bytea), sha256(('old4-' || :r)::bytea),
    sha256(('old5-' || :r)::bytea), sha256(('old6-' || :r)::bytea), sha256(('old7-' || :r)::bytea),
    sha256(('old8-' || :r)::bytea)) AND EXISTS (SELECT 1 FROM root)),
  record AS (INSERT INTO bench_record (client, rkey, cid, boundaries)
    SELECT :client_id, :r::text, sha256(('1-' || :client_id || '-' || :r)::bytea), ARRAY['did:web:s/even']
    WHERE EXISTS (SELECT 1 FROM root)
    ON CONFLICT (client, rkey) DO UPDATE SET cid = excluded.cid),
  event AS (INSERT INTO bench_event (client, ops)
    SELECT :client_id, convert_to(repeat('y', 200), 'UTF8') WHERE EXISTS (SELECT 1 FROM root) RETURNING seq),
  outbox AS (INSERT INTO bench_outbox (client, item, due_ms)
    SELECT :client_id, convert_to(repeat('z', 400), 'UTF8'), 0 WHERE EXISTS (SELECT 1 FROM root))
SELECT (SELECT count(*) FROM root), (SELECT seq FROM event);
COMMIT;
