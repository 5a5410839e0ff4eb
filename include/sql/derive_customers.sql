-- customers derived from transactions, for a provider that delivers no customer file: every customer
-- who bought in the drop, first seen at their first purchase (signup_date). The optional columns the
-- pipeline reads (region, segment, age) are absent: NULL, and the features built on them are left out.
CREATE TABLE IF NOT EXISTS customers (
    customer_id    VARCHAR,
    signup_date    DATE,
    region         VARCHAR,
    segment        VARCHAR,
    age            BIGINT,
    snapshot_date  DATE,
    load_id        VARCHAR
);

DELETE FROM customers WHERE snapshot_date = CAST($snapshot_date AS DATE);

INSERT INTO customers BY NAME
    SELECT
        customer_id,
        min(txn_date)                  AS signup_date,
        CAST($snapshot_date AS DATE)   AS snapshot_date,
        $load_id                       AS load_id
    FROM transactions
    WHERE snapshot_date = CAST($snapshot_date AS DATE) AND customer_id IS NOT NULL
    GROUP BY customer_id;
