-- Tables for benches/commit_shape.sql (run once with psql; drop them afterwards).
DROP TABLE IF EXISTS bench_root, bench_block, bench_record, bench_event, bench_outbox;
CREATE TABLE bench_root (id INT PRIMARY KEY, rev BIGINT NOT NULL);
INSERT INTO bench_root SELECT g, 0 FROM generate_series(0, 128) g;
CREATE TABLE bench_block (id BIGSERIAL PRIMARY KEY, cid BYTEA NOT NULL UNIQUE, content BYTEA NOT NULL);
CREATE TABLE bench_record (client INT NOT NULL, rkey TEXT NOT NULL, cid BYTEA NOT NULL, boundaries TEXT[] NOT NULL, PRIMARY KEY (client, rkey));
CREATE TABLE bench_event (seq BIGSERIAL PRIMARY KEY, client INT NOT NULL, ops BYTEA NOT NULL);
CREATE TABLE bench_outbox (id BIGSERIAL PRIMARY KEY, client INT NOT NULL, item BYTEA NOT NULL, due_ms BIGINT NOT NULL);
