-- Stats from rollups. GET /api/models/{m}/stats computed percentile_cont over every row of its window at
-- each cache miss: 70 ms for 24 hours of one model at 10 M rows, and growing with traffic. The writer now
-- adds each batch it inserts to per-minute and per-hour rows of this table, in the same transaction as
-- the rows (src/db/rollups.rs, prediction_rollups_add below), so the stats read at most 61 minute rows or
-- 169 hour rows per model, whatever the traffic. A retried batch adds only the rows it really inserted
-- (INSERT ... RETURNING id).
--
-- latency: a histogram of the successes' total_us. Bucket 0 counts latencies under 8 us, bucket b
-- (1..184) those in [bound b, bound b+1), bucket 185 those of 2^26 us (67 s) and more, with the bounds of
-- prediction_latency_bounds(): ceil(2^(j/8)) us for j = 24..208, eight buckets per doubling, so a
-- percentile read from it is within 9 % of the exact one. The server and this function must agree on
-- the bounds; a unit test compares them. Only the buckets from the first non-empty one to the last are
-- stored (latency[1] is bucket latency_first): a model's latencies span a few doublings, and sending
-- 186 counts a row made every model's 1 h stats (488 rows) take 19 ms at p99.
--
-- Minute rows are kept for a day (the 5m and 1h windows read them), hour rows as long as the log's
-- retention; the server deletes older ones with its partition maintenance.
--
-- Partitioned by period: minute and hour rows differ in how far back they go, so over one table the
-- planner multiplied "period = 'hour'" by "start >= a day ago" as if independent, overestimated every
-- model's 24 h rows sixteen-fold and scanned the whole table (measured: 90 ms at p99). Each partition
-- keeps its own statistics of start.
--
-- Rows written by a binary older than this migration (during a rolling update) are logged but not
-- rolled up, so the stats undercount them; prediction_rollups_rebuild(since) recomputes the rollups
-- from the log.
CREATE TABLE prediction_rollups (
    model         TEXT        NOT NULL,
    period        TEXT        NOT NULL,
    start         TIMESTAMPTZ NOT NULL,
    requests      BIGINT      NOT NULL,
    errors        BIGINT      NOT NULL,
    successes     BIGINT      NOT NULL,
    -- The sum of batch_size over the successes: mean batch = batch_rows / successes.
    batch_rows    BIGINT      NOT NULL,
    latency_first INTEGER     NOT NULL,
    latency       BIGINT[]    NOT NULL,
    PRIMARY KEY (model, period, start)
) PARTITION BY LIST (period);
CREATE TABLE prediction_rollups_minute PARTITION OF prediction_rollups FOR VALUES IN ('minute');
CREATE TABLE prediction_rollups_hour PARTITION OF prediction_rollups FOR VALUES IN ('hour');

-- Every model's stats (GET /api/models) and the expiry of old rows read by period and start.
CREATE INDEX prediction_rollups_period_start_idx ON prediction_rollups (period, start);

CREATE FUNCTION prediction_latency_bounds() RETURNS BIGINT[] LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN '{8,9,10,11,12,13,14,15,16,18,20,21,23,25,27,30,32,35,39,42,46,50,54,59,64,70,77,83,91,99,108,118,128,140,153,166,182,198,216,235,256,280,305,332,363,395,431,470,512,559,609,664,725,790,862,940,1024,1117,1218,1328,1449,1580,1723,1879,2048,2234,2436,2656,2897,3159,3445,3757,4096,4467,4871,5312,5793,6317,6889,7513,8192,8934,9742,10624,11586,12634,13778,15025,16384,17867,19484,21248,23171,25268,27555,30049,32768,35734,38968,42495,46341,50536,55109,60097,65536,71468,77936,84990,92682,101071,110218,120194,131072,142936,155872,169980,185364,202141,220436,240388,262144,285871,311744,339959,370728,404282,440872,480775,524288,571741,623488,679918,741456,808563,881744,961549,1048576,1143481,1246975,1359835,1482911,1617126,1763488,1923097,2097152,2286961,2493949,2719670,2965821,3234251,3526976,3846194,4194304,4573921,4987897,5439340,5931642,6468502,7053951,7692388,8388608,9147842,9975793,10878679,11863284,12937003,14107901,15384775,16777216,18295684,19951585,21757358,23726567,25874005,28215802,30769550,33554432,36591368,39903170,43514715,47453133,51748009,56431604,61539100,67108864}'::BIGINT[];

CREATE FUNCTION prediction_latency_bucket(total_us BIGINT) RETURNS INTEGER LANGUAGE sql IMMUTABLE PARALLEL SAFE
    RETURN width_bucket(total_us, prediction_latency_bounds());

-- The sum of two stored histograms, each from its first non-empty bucket (a_first, b_first) on.
CREATE FUNCTION prediction_histogram_add(a_first INTEGER, a BIGINT[], b_first INTEGER, b BIGINT[],
                                         OUT first INTEGER, OUT counts BIGINT[])
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
DECLARE
    a_len INTEGER := coalesce(array_length(a, 1), 0);
    b_len INTEGER := coalesce(array_length(b, 1), 0);
BEGIN
    IF a_len = 0 OR b_len = 0 THEN
        first := CASE WHEN a_len = 0 THEN b_first ELSE a_first END;
        counts := CASE WHEN a_len = 0 THEN b ELSE a END;
        RETURN;
    END IF;
    first := least(a_first, b_first);
    counts := array_fill(0::BIGINT, ARRAY[greatest(a_first + a_len, b_first + b_len) - first]);
    FOR i IN 1 .. a_len LOOP
        counts[a_first - first + i] := counts[a_first - first + i] + a[i];
    END LOOP;
    FOR i IN 1 .. b_len LOOP
        counts[b_first - first + i] := counts[b_first - first + i] + b[i];
    END LOOP;
END
$$;

-- A stored histogram from (bucket, count) pairs.
CREATE FUNCTION prediction_histogram(buckets INTEGER[], ns BIGINT[], OUT first INTEGER, OUT counts BIGINT[])
    LANGUAGE plpgsql IMMUTABLE PARALLEL SAFE AS $$
BEGIN
    first := 0;
    counts := '{}';
    IF coalesce(array_length(buckets, 1), 0) = 0 THEN
        RETURN;
    END IF;
    first := (SELECT min(b) FROM unnest(buckets) AS b);
    counts := array_fill(0::BIGINT, ARRAY[(SELECT max(b) FROM unnest(buckets) AS b) - first + 1]);
    FOR i IN 1 .. array_length(buckets, 1) LOOP
        counts[buckets[i] - first + 1] := counts[buckets[i] - first + 1] + ns[i];
    END LOOP;
END
$$;

-- What the writer calls with each batch, in the transaction that inserts its rows: one row per (model,
-- period, start), the histograms concatenated in latency (row i's at offsets[i], lengths[i] long).
-- Upserts in key order, so two replicas adding to the same rows lock them in the same order. SECURITY
-- DEFINER: a role that may insert predictions may add their rollups, with the grants a DML-only role
-- already has (SELECT, INSERT) and without UPDATE on any table.
CREATE FUNCTION prediction_rollups_add(models TEXT[], periods TEXT[], starts TIMESTAMPTZ[], requests BIGINT[],
                                       errors BIGINT[], successes BIGINT[], batch_rows BIGINT[],
                                       firsts INTEGER[], offsets INTEGER[], lengths INTEGER[], latency BIGINT[])
    RETURNS VOID LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
BEGIN
    IF NOT has_table_privilege(session_user, 'predictions', 'INSERT') THEN
        RAISE EXCEPTION 'permission denied: % may not insert predictions', session_user
            USING ERRCODE = 'insufficient_privilege';
    END IF;
    INSERT INTO prediction_rollups AS r
        (model, period, start, requests, errors, successes, batch_rows, latency_first, latency)
    SELECT u.model, u.period, u.start, u.requests, u.errors, u.successes, u.batch_rows, u.first,
           coalesce(latency[u.off + 1 : u.off + u.len], '{}')
    FROM unnest(models, periods, starts, requests, errors, successes, batch_rows, firsts, offsets, lengths)
         AS u(model, period, start, requests, errors, successes, batch_rows, first, off, len)
    ORDER BY u.model, u.period, u.start
    ON CONFLICT (model, period, start) DO UPDATE SET requests = r.requests + excluded.requests,
        errors = r.errors + excluded.errors, successes = r.successes + excluded.successes,
        batch_rows = r.batch_rows + excluded.batch_rows,
        (latency_first, latency) = (SELECT m.first, m.counts FROM prediction_histogram_add(
            r.latency_first, r.latency, excluded.latency_first, excluded.latency) AS m);
END
$$;

-- Recomputes the rollups of the rows created since `since` (minute rows only for the last day), for
-- rows logged without them. The writers wait on the table lock meanwhile, so that none of their
-- additions is lost between the delete and the recount.
CREATE FUNCTION prediction_rollups_rebuild(since TIMESTAMPTZ) RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    made BIGINT;
BEGIN
    LOCK TABLE prediction_rollups IN EXCLUSIVE MODE;
    DELETE FROM prediction_rollups WHERE start >= date_trunc('hour', since, 'UTC');
    WITH rows AS (
        SELECT p.model, r.period, date_trunc(r.period, p.created_at, 'UTC') AS start, p.outcome, p.batch_size,
               CASE WHEN p.outcome = 'success' THEN prediction_latency_bucket(p.total_us) END AS bucket
        FROM predictions p CROSS JOIN (VALUES ('minute'), ('hour')) AS r(period)
        WHERE p.created_at >= date_trunc('hour', since, 'UTC')
          AND (r.period = 'hour' OR p.created_at >= date_trunc('minute', now() - interval '1 day', 'UTC'))),
    counts AS (
        SELECT model, period, start, bucket, count(*) AS n, coalesce(sum(batch_size), 0) AS batch_rows
        FROM rows GROUP BY 1, 2, 3, 4),
    rollups AS (
        SELECT model, period, start, sum(n) AS requests, coalesce(sum(n) FILTER (WHERE bucket IS NULL), 0) AS errors,
               coalesce(sum(n) FILTER (WHERE bucket IS NOT NULL), 0) AS successes,
               coalesce(sum(batch_rows) FILTER (WHERE bucket IS NOT NULL), 0) AS batch_rows,
               prediction_histogram(coalesce(array_agg(bucket) FILTER (WHERE bucket IS NOT NULL), '{}'),
                                    coalesce(array_agg(n) FILTER (WHERE bucket IS NOT NULL), '{}')) AS h
        FROM counts GROUP BY 1, 2, 3)
    INSERT INTO prediction_rollups
        (model, period, start, requests, errors, successes, batch_rows, latency_first, latency)
    SELECT model, period, start, requests, errors, successes, batch_rows, (h).first, (h).counts FROM rollups;
    GET DIAGNOSTICS made = ROW_COUNT;
    RETURN made;
END
$$;

SELECT prediction_rollups_rebuild('-infinity');
