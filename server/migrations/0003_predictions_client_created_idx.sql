-- no-transaction
-- Serves GET /api/predictions?client=C (a client's history, newest first). Partial: most rows carry
-- no client id and need no entry.
CREATE INDEX CONCURRENTLY IF NOT EXISTS predictions_client_created_idx
    ON predictions (client_id, created_at DESC, id DESC) WHERE client_id IS NOT NULL;
