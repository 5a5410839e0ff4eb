-- labels: for each training row of features (purpose 'train'), label = 1 when the customer has at
-- least one transaction in [as_of, as_of + horizon_days) in the same drop. Every such window ends
-- on or before the drop's snapshot date, so every label is fully observed.
CREATE TABLE IF NOT EXISTS labels (
    customer_id      VARCHAR,
    snapshot_date    DATE,
    source_snapshot  DATE,
    horizon_days     INTEGER,
    label            INTEGER
);

BEGIN TRANSACTION;

DELETE FROM labels WHERE source_snapshot = CAST($snapshot_date AS DATE);

INSERT INTO labels
WITH training_dates AS (
    SELECT DISTINCT snapshot_date AS as_of
    FROM features
    WHERE source_snapshot = CAST($snapshot_date AS DATE) AND purpose = 'train'
),
active_in_horizon AS (
    SELECT DISTINCT training_dates.as_of, transactions.customer_id
    FROM transactions
    JOIN training_dates
        ON transactions.txn_date >= training_dates.as_of
        AND transactions.txn_date < training_dates.as_of + CAST($horizon_days AS INTEGER)
    WHERE transactions.snapshot_date = CAST($snapshot_date AS DATE)
)
SELECT
    features.customer_id,
    features.snapshot_date,
    features.source_snapshot,
    CAST($horizon_days AS INTEGER),
    CAST(active_in_horizon.customer_id IS NOT NULL AS INTEGER) AS label
FROM features
LEFT JOIN active_in_horizon
    ON active_in_horizon.customer_id = features.customer_id
    AND active_in_horizon.as_of = features.snapshot_date
WHERE features.source_snapshot = CAST($snapshot_date AS DATE) AND features.purpose = 'train';

COMMIT;
