-- no-transaction
-- Serves GET /api/predictions?model=M (newest first, keyset pages on (created_at, id)),
-- GET /api/models/M/stats (a model's rows in a time window) and their `since`/`until` bounds.
CREATE INDEX CONCURRENTLY IF NOT EXISTS predictions_model_created_idx
    ON predictions (model, created_at DESC, id DESC);
