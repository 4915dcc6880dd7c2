-- no-transaction
-- Serves GET /api/predictions with no model or client filter (the newest rows of all models, keyset pages)
-- and GET /api/models (every model's stats over a recent window: a range on created_at). A BRIN index
-- would be smaller for the range, but cannot give the listing its order; one index on the column, not
-- two, keeps the writer's cost per row down.
CREATE INDEX CONCURRENTLY IF NOT EXISTS predictions_created_idx
    ON predictions (created_at DESC, id DESC);
