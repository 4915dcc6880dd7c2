-- The prediction log: one row per inference request the server answered, and feedback on predictions.
-- Indexes live in the migrations after this one, each built CONCURRENTLY so that adding one to a table
-- being written never blocks the writes.

CREATE TABLE predictions (
    -- UUIDv7: time-ordered, so new rows append to the primary key's right edge.
    id            UUID PRIMARY KEY,
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
    outcome       TEXT NOT NULL CHECK (outcome IN ('success', 'invalid', 'rejected', 'timeout', 'error')),
    error         TEXT,
    -- --log-payloads digest|full: the request's digest or (capped) body.
    payload       JSONB
);

CREATE TABLE feedback (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    prediction_id UUID NOT NULL REFERENCES predictions (id) ON DELETE CASCADE,
    label         TEXT,
    score         DOUBLE PRECISION,
    comment       TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (label IS NOT NULL OR score IS NOT NULL OR comment IS NOT NULL)
);
