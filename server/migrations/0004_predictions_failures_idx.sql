-- no-transaction
-- Serves GET /api/predictions?outcome=failure (recent failures of any model). Partial: failures are rare,
-- so the index stays small however large the table grows.
CREATE INDEX CONCURRENTLY IF NOT EXISTS predictions_failures_idx
    ON predictions (created_at DESC, id DESC) WHERE outcome <> 'success';
