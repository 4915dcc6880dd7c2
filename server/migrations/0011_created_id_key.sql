-- One unique key, (created_at, id), in place of two indexes: the primary key (id, created_at) and
-- predictions_created_idx (created_at DESC, id DESC). Every row went into five btrees (three for a
-- success without a client id); each costs the writer about as much as parsing the row's JSON. This key
-- gives the listings their order as the old index did, and finds a row by id as the primary key did,
-- since ids are UUIDv7 made from created_at's millisecond: the lookup reads that millisecond's rows
-- (src/db/queries.rs). Measured in psql, 100,000 heavy_mlp rows with outputs, four rounds in alternation:
-- 1.4 to 2.4 s against 1.7 to 3.6 s; through the writer (kubeinfer-bench db, five runs each in
-- alternation), heavy_mlp rows with outputs went from a median of 51,635 rows/s to 66,714
-- (docs/benchmarks.md).
--
-- Made here ON ONLY the parent, which changes only the catalog: on the parent itself, the index would be
-- built on every existing partition inside this migration's transaction, blocking the writer for as
-- long as the builds take. Partitions attached from now on get their copy when they are attached. The
-- server's partition maintenance (src/db/unique_key.rs) builds each existing partition's copy with
-- CREATE UNIQUE INDEX CONCURRENTLY and attaches it; PostgreSQL marks the key valid once every partition
-- has it, and the maintenance then drops the old primary key and index. Until then both keys hold, and
-- the listings and lookups use whichever the planner prefers.
--
-- No constraint is named PRIMARY KEY afterwards: PostgreSQL cannot turn a partitioned unique index into
-- one without building it again. The key is one in all but name (both columns are NOT NULL, and it is
-- what a retried batch's ON CONFLICT DO NOTHING meets).
--
-- A log without partitions yet (a new install, or one whose unpartitioned table migration 0007 set
-- aside) has nothing to build: the old keys go at once.
CREATE UNIQUE INDEX IF NOT EXISTS predictions_created_id_key ON ONLY predictions (created_at DESC, id DESC);
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_inherits WHERE inhparent = 'predictions'::regclass) THEN
        ALTER TABLE predictions DROP CONSTRAINT IF EXISTS predictions_pkey;
        DROP INDEX IF EXISTS predictions_created_idx;
    END IF;
END
$$;
