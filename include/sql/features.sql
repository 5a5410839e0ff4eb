-- features: one row per (customer_id, snapshot_date) built from the drop of $snapshot_date.
--   snapshot_date   = the as-of date T of the features (point in time: only transactions dated < T)
--   source_snapshot = the drop they were computed from
--   purpose         = 'score' for T itself, 'train' for T - horizon - k * step (k < training_snapshots)
-- Idempotent: the drop's rows are replaced in one transaction. A scoring pipeline (training_snapshots
-- = 0) replaces only the 'score' rows, so it never removes a training pipeline's rows of the same drop.
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
WHERE source_snapshot = CAST($snapshot_date AS DATE) AND (purpose = 'score' OR $training_snapshots > 0);

INSERT INTO features
WITH feature_dates AS (
    SELECT CAST($snapshot_date AS DATE) AS as_of, 'score' AS purpose
    UNION ALL
    SELECT CAST($snapshot_date AS DATE) - CAST($horizon_days + k * $snapshot_step_days AS INTEGER), 'train'
    FROM range($training_snapshots) AS steps(k)
),
history_before_as_of AS (
    SELECT feature_dates.as_of, transactions.customer_id, transactions.txn_date, transactions.amount
    FROM transactions
    JOIN feature_dates ON transactions.txn_date < feature_dates.as_of
    WHERE transactions.snapshot_date = CAST($snapshot_date AS DATE)
),
activity_per_customer AS (  -- aggregate before joining customers: far cheaper than joining first
    SELECT
        as_of,
        customer_id,
        max(txn_date)                                                          AS last_txn_date,
        count(*) FILTER (WHERE txn_date >= as_of - 30)                         AS txn_count_30,
        count(*) FILTER (WHERE txn_date >= as_of - 90)                         AS txn_count_90,
        count(*) FILTER (WHERE txn_date >= as_of - 365)                        AS txn_count_365,
        count(*) FILTER (WHERE txn_date >= as_of - 180 AND txn_date < as_of - 90) AS txn_count_prev_90,
        sum(amount) FILTER (WHERE txn_date >= as_of - 30)                      AS amount_sum_30,
        sum(amount) FILTER (WHERE txn_date >= as_of - 90)                      AS amount_sum_90,
        sum(amount) FILTER (WHERE txn_date >= as_of - 365)                     AS amount_sum_365,
        count(*)                                                               AS txn_count_all,
        sum(amount)                                                            AS amount_sum_all
    FROM history_before_as_of
    GROUP BY as_of, customer_id
)
SELECT
    customers.customer_id,
    feature_dates.as_of                                                   AS snapshot_date,
    CAST($snapshot_date AS DATE)                                          AS source_snapshot,
    feature_dates.purpose,
    customers.age,
    customers.region,
    customers.segment,
    greatest(feature_dates.as_of - customers.signup_date, 0)              AS tenure_days,
    -- no purchase yet: as long ago as the customer signed up (capped at two years)
    coalesce(feature_dates.as_of - activity.last_txn_date,
             least(greatest(feature_dates.as_of - customers.signup_date, 0), 730), 730) AS recency_days,
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
FROM feature_dates
JOIN customers
    ON customers.snapshot_date = CAST($snapshot_date AS DATE)
    -- training rows only for customers who had signed up by then (point in time)
    AND (feature_dates.purpose = 'score' OR customers.signup_date IS NULL
         OR customers.signup_date < feature_dates.as_of)
LEFT JOIN activity_per_customer AS activity
    ON activity.customer_id = customers.customer_id AND activity.as_of = feature_dates.as_of;

COMMIT;
