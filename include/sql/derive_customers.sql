-- customers derived from transactions, for a provider that delivers no customer file: every customer who
-- bought in the transactions a run of $snapshot_date sees (every drop up to it), first seen at the first
-- purchase (signup_date). The optional columns the pipeline reads (region, segment, age) are absent: NULL,
-- and the features built on them are left out. load stores the result like a full extract of customers.
SELECT
    customer_id,
    min(txn_date)            AS signup_date,
    CAST(NULL AS VARCHAR)    AS region,
    CAST(NULL AS VARCHAR)    AS segment,
    CAST(NULL AS BIGINT)     AS age
FROM transactions
WHERE valid_from <= CAST($snapshot_date AS DATE)
  AND (valid_to IS NULL OR valid_to > CAST($snapshot_date AS DATE))
  AND customer_id IS NOT NULL
GROUP BY customer_id
