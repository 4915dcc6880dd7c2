-- Retention: the log is partitioned by day of created_at (UTC), so that dropping a day is dropping a
-- table, whatever the table's size, and never a DELETE that bloats the heap and competes with the
-- writer. The server creates partitions ahead and drops expired ones (src/db/partitions.rs).
--
-- Keys: a partitioned table's unique keys must include the partition key, so the primary key is
-- (id, created_at); ids are still UUIDv7, and a lookup by id adds the created_at range its timestamp
-- implies, which prunes to one partition. `feedback` carries its prediction's created_at and is
-- partitioned by it, so a prediction's feedback is dropped with the prediction. There is no foreign key
-- between them: detaching a referenced partition would scan the referencing table, the cost retention by
-- partition exists to avoid. Feedback is only ever inserted for an existing prediction (the INSERT
-- selects it), and both days are dropped together, so no feedback is left without its prediction.
--
-- An existing log is moved, not rewritten in place: the old tables are renamed to *_unpartitioned here
-- (a catalog change, instant at any size), new rows go to the partitioned tables from now on, and the
-- server moves the retained window across in small batches in the background (src/db/backfill.rs),
-- then drops the old tables. The /api reads the partitioned tables only, so rows not yet moved are
-- missing from it for the minutes the move takes; none are lost.
--
-- Indexes on the partitioned parents are made here, non-concurrently, while the parents are empty;
-- each partition gets its own copy when it is attached. A future index is added with CREATE INDEX ON
-- ONLY the parent, CREATE INDEX CONCURRENTLY on each partition and ALTER INDEX ... ATTACH PARTITION.

ALTER TABLE predictions RENAME TO predictions_unpartitioned;
ALTER TABLE predictions_unpartitioned RENAME CONSTRAINT predictions_pkey TO predictions_unpartitioned_pkey;
ALTER INDEX IF EXISTS predictions_model_created_idx RENAME TO predictions_unpartitioned_model_created_idx;
ALTER INDEX IF EXISTS predictions_client_created_idx RENAME TO predictions_unpartitioned_client_created_idx;
ALTER INDEX IF EXISTS predictions_failures_idx RENAME TO predictions_unpartitioned_failures_idx;
ALTER INDEX IF EXISTS predictions_created_idx RENAME TO predictions_unpartitioned_created_idx;
ALTER TABLE feedback RENAME TO feedback_unpartitioned;
ALTER TABLE feedback_unpartitioned RENAME CONSTRAINT feedback_pkey TO feedback_unpartitioned_pkey;
ALTER INDEX IF EXISTS feedback_prediction_idx RENAME TO feedback_unpartitioned_prediction_idx;
ALTER SEQUENCE feedback_id_seq RENAME TO feedback_unpartitioned_id_seq;

CREATE TABLE predictions (
    -- UUIDv7 whose timestamp is created_at's millisecond.
    id            UUID NOT NULL,
    -- The Open Inference Protocol request `id`, when the caller sent one.
    request_id    TEXT,
    model         TEXT NOT NULL,
    model_version BIGINT NOT NULL,
    -- The caller's X-Client-Id header, when sent.
    client_id     TEXT,
    created_at    TIMESTAMPTZ NOT NULL,
    queue_us      BIGINT NOT NULL,
    compute_us    BIGINT NOT NULL,
    total_us      BIGINT NOT NULL,
    -- Rows in the batch the request ran in (0 when it never ran).
    batch_size    INTEGER NOT NULL,
    outcome       TEXT NOT NULL CHECK (outcome IN ('success', 'invalid', 'rejected', 'timeout', 'error', 'shed')),
    error         TEXT,
    -- --log-payloads digest|full: the request's digest or (capped) body.
    payload       JSONB,
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);

-- The same four read paths as migrations 0002 to 0005 (their comments say which query each serves).
CREATE INDEX predictions_model_created_idx ON predictions (model, created_at DESC, id DESC);
CREATE INDEX predictions_client_created_idx ON predictions (client_id, created_at DESC, id DESC)
    WHERE client_id IS NOT NULL;
CREATE INDEX predictions_failures_idx ON predictions (created_at DESC, id DESC) WHERE outcome <> 'success';
CREATE INDEX predictions_created_idx ON predictions (created_at DESC, id DESC);

-- Identity columns cannot be declared on a partitioned table before PostgreSQL 17: a sequence instead,
-- started past the old table's ids so that moved feedback keeps its id.
CREATE SEQUENCE feedback_id_seq AS BIGINT;
SELECT setval('feedback_id_seq', coalesce((SELECT max(id) FROM feedback_unpartitioned), 0) + 1, false);

CREATE TABLE feedback (
    id                    BIGINT NOT NULL DEFAULT nextval('feedback_id_seq'),
    prediction_id         UUID NOT NULL,
    -- The prediction's created_at: the partition key, shared with the prediction.
    prediction_created_at TIMESTAMPTZ NOT NULL,
    label                 TEXT,
    score                 DOUBLE PRECISION,
    comment               TEXT,
    created_at            TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (label IS NOT NULL OR score IS NOT NULL OR comment IS NOT NULL),
    PRIMARY KEY (id, prediction_created_at)
) PARTITION BY RANGE (prediction_created_at);
ALTER SEQUENCE feedback_id_seq OWNED BY feedback.id;

CREATE INDEX feedback_prediction_idx ON feedback (prediction_id, created_at);
