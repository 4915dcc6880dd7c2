-- no-transaction
-- Serves GET /api/predictions/{id} and the one extra query of GET /api/predictions?include=feedback
-- (feedback WHERE prediction_id = ANY($1)), without a scan of feedback per prediction.
CREATE INDEX CONCURRENTLY IF NOT EXISTS feedback_prediction_idx
    ON feedback (prediction_id, created_at);
