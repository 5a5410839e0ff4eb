-- features: one row per (customer_id, snapshot_date) built for the drop of $snapshot_date.
--   snapshot_date   = the as-of date T of the features (point in time: only transactions dated < T)
--   source_snapshot = the drop they were computed for: its run reads every row delivered by drops up to it,
--                     never a later drop's (valid_from <= drop < valid_to; see batchops.storage.versions)
--   purpose         = 'score' for the drop's own date, 'train' for T - horizon - k * step (k < training_snapshots)
-- Runs once per as-of date ($as_of, $purpose), the drop's own date first, and per range of the
-- customers ($customer_from <= customer_id < $customer_to, NULL: open; one range up to a million customers) - see
-- batchops.stages.features: one GROUP BY customer_id per date and range keeps DuckDB's aggregate state
-- within the memory limit, where grouping all dates (or all of 3M customers) at once spilled to disk
-- (docs/performance.md). Each run replaces its own rows in one transaction; the drop's 'score' runs
-- also remove its training rows in a training pipeline, so a window dropped from the config leaves
-- none behind. A scoring pipeline (training_snapshots = 0) replaces only 'score' rows, so it never
-- removes a training pipeline's rows of the same drop.
CREATE TABLE IF NOT EXISTS features (
    customer_id      VARCHAR,
    snapshot_date    DATE,
    source_snapshot  DATE,
    purpose          VARCHAR,
    age              DOUBLE,
    region           VARCHAR,
    segment          VARCHAR,
    tenure_days      INTEGER,
    recency_days     INTEGER,
    has_history      INTEGER,
    txn_count_30     INTEGER,
    txn_count_90     INTEGER,
    txn_count_365    INTEGER,
    amount_sum_30    DOUBLE,
    amount_sum_90    DOUBLE,
    amount_sum_365   DOUBLE,
    avg_amount_365   DOUBLE,
    txn_trend_90     INTEGER,
    txn_count_all    INTEGER,
    amount_sum_all   DOUBLE,
    avg_amount_all   DOUBLE
);

BEGIN TRANSACTION;

DELETE FROM features
WHERE source_snapshot = CAST($snapshot_date AS DATE)
  AND ((snapshot_date = CAST($as_of AS DATE) AND purpose = $purpose
            AND (CAST($customer_from AS VARCHAR) IS NULL OR customer_id >= $customer_from)
            AND (CAST($customer_to AS VARCHAR) IS NULL OR customer_id < $customer_to))
       OR ($purpose = 'score' AND purpose = 'train' AND $training_snapshots > 0));

INSERT INTO features
WITH activity_per_customer AS (  -- aggregate before joining customers: far cheaper than joining first
    SELECT
        customer_id,
        max(txn_date)                                                                  AS last_txn_date,
        count(*) FILTER (WHERE txn_date >= CAST($as_of AS DATE) - 30)                  AS txn_count_30,
        count(*) FILTER (WHERE txn_date >= CAST($as_of AS DATE) - 90)                  AS txn_count_90,
        count(*) FILTER (WHERE txn_date >= CAST($as_of AS DATE) - 365)                 AS txn_count_365,
        count(*) FILTER (WHERE txn_date >= CAST($as_of AS DATE) - 180
                           AND txn_date < CAST($as_of AS DATE) - 90)                   AS txn_count_prev_90,
        sum(amount_units) FILTER (WHERE txn_date >= CAST($as_of AS DATE) - 30) / 10000  AS amount_sum_30,
        sum(amount_units) FILTER (WHERE txn_date >= CAST($as_of AS DATE) - 90) / 10000  AS amount_sum_90,
        sum(amount_units) FILTER (WHERE txn_date >= CAST($as_of AS DATE) - 365) / 10000 AS amount_sum_365,
        count(*)                                                                       AS txn_count_all,
        sum(amount_units) / 10000                                                      AS amount_sum_all
    FROM (
        -- amounts summed as whole ten-thousandths: a sum of doubles depends on the order rows are stored in,
        -- and the same purchases must give the same features however they were delivered and stored
        SELECT customer_id, txn_date, CAST(round(amount * 10000) AS BIGINT) AS amount_units
        FROM transactions
        WHERE valid_from <= CAST($snapshot_date AS DATE)
          AND (valid_to IS NULL OR valid_to > CAST($snapshot_date AS DATE))
          AND txn_date < CAST($as_of AS DATE)
          AND (CAST($customer_from AS VARCHAR) IS NULL OR customer_id >= $customer_from)
          AND (CAST($customer_to AS VARCHAR) IS NULL OR customer_id < $customer_to)
    ) AS transactions
    GROUP BY customer_id
)
SELECT
    customers.customer_id,
    CAST($as_of AS DATE)                                                  AS snapshot_date,
    CAST($snapshot_date AS DATE)                                          AS source_snapshot,
    $purpose                                                              AS purpose,
    customers.age,
    customers.region,
    customers.segment,
    greatest(CAST($as_of AS DATE) - customers.signup_date, 0)             AS tenure_days,
    -- no purchase yet: as long ago as the customer signed up (capped at two years)
    coalesce(CAST($as_of AS DATE) - activity.last_txn_date,
             least(greatest(CAST($as_of AS DATE) - customers.signup_date, 0), 730), 730) AS recency_days,
    CAST(activity.customer_id IS NOT NULL AS INTEGER)                     AS has_history,
    coalesce(activity.txn_count_30, 0),
    coalesce(activity.txn_count_90, 0),
    coalesce(activity.txn_count_365, 0),
    coalesce(activity.amount_sum_30, 0),
    coalesce(activity.amount_sum_90, 0),
    coalesce(activity.amount_sum_365, 0),
    coalesce(activity.amount_sum_365 / nullif(activity.txn_count_365, 0), 0) AS avg_amount_365,
    coalesce(activity.txn_count_90, 0) - coalesce(activity.txn_count_prev_90, 0) AS txn_trend_90,
    coalesce(activity.txn_count_all, 0),
    coalesce(activity.amount_sum_all, 0),
    coalesce(activity.amount_sum_all / nullif(activity.txn_count_all, 0), 0) AS avg_amount_all
FROM customers
LEFT JOIN activity_per_customer AS activity ON activity.customer_id = customers.customer_id
WHERE customers.valid_from <= CAST($snapshot_date AS DATE)
  AND (customers.valid_to IS NULL OR customers.valid_to > CAST($snapshot_date AS DATE))
  AND (CAST($customer_from AS VARCHAR) IS NULL OR customers.customer_id >= $customer_from)
  AND (CAST($customer_to AS VARCHAR) IS NULL OR customers.customer_id < $customer_to)
  -- training rows only for customers who had signed up by then (point in time)
  AND ($purpose = 'score' OR customers.signup_date IS NULL OR customers.signup_date < CAST($as_of AS DATE));

COMMIT;
