-- The protocol a prediction came over: 'rest' (the Open Inference Protocol over HTTP) or 'grpc'. The
-- default is a constant, so adding the column changes only the catalog however large the table, and it is
-- right for every row already logged and for a binary that does not know the column (both REST only).
ALTER TABLE predictions ADD COLUMN protocol TEXT NOT NULL DEFAULT 'rest';
