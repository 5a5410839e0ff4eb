-- labels: for each training row of features (purpose 'train'), label = 1 when the customer has at
-- least one transaction in [as_of, as_of + horizon_days) among the rows a run of the drop reads (every drop
-- up to it). Every such window ends on or before the drop's snapshot date, so every label is fully observed.
-- Runs once per as-of date and range of customers like features.sql: the drop's own date
-- ('score', first) clears the drop's labels and adds none; each training date adds its own.
CREATE TABLE IF NOT EXISTS labels (
    customer_id      VARCHAR,
    snapshot_date    DATE,
    source_snapshot  DATE,
    horizon_days     INTEGER,
    label            INTEGER
);

BEGIN TRANSACTION;

DELETE FROM labels
WHERE source_snapshot = CAST($snapshot_date AS DATE)
  AND ((snapshot_date = CAST($as_of AS DATE)
        AND (CAST($customer_from AS VARCHAR) IS NULL OR customer_id >= $customer_from)
        AND (CAST($customer_to AS VARCHAR) IS NULL OR customer_id < $customer_to))
       OR $purpose = 'score');

INSERT INTO labels
WITH active_in_horizon AS (
    SELECT DISTINCT customer_id
    FROM transactions
    WHERE valid_from <= CAST($snapshot_date AS DATE)
      AND (valid_to IS NULL OR valid_to > CAST($snapshot_date AS DATE))
      AND txn_date >= CAST($as_of AS DATE)
      AND txn_date < CAST($as_of AS DATE) + CAST($horizon_days AS INTEGER)
      AND (CAST($customer_from AS VARCHAR) IS NULL OR customer_id >= $customer_from)
      AND (CAST($customer_to AS VARCHAR) IS NULL OR customer_id < $customer_to)
)
SELECT
    features.customer_id,
    features.snapshot_date,
    features.source_snapshot,
    CAST($horizon_days AS INTEGER),
    CAST(active_in_horizon.customer_id IS NOT NULL AS INTEGER) AS label
FROM features
LEFT JOIN active_in_horizon ON active_in_horizon.customer_id = features.customer_id
WHERE features.source_snapshot = CAST($snapshot_date AS DATE)
  AND features.snapshot_date = CAST($as_of AS DATE)
  AND features.purpose = 'train' AND $purpose = 'train'
  AND (CAST($customer_from AS VARCHAR) IS NULL OR features.customer_id >= $customer_from)
  AND (CAST($customer_to AS VARCHAR) IS NULL OR features.customer_id < $customer_to);

COMMIT;
