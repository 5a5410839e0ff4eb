-- A full extract (delivery: snapshot) of drop $snapshot_date, later than every drop stored: store only what
-- changed since the stored state. Rows are compared within buckets ({bucket}: customer_id, the key, or one
-- bucket): the buckets whose row count or content checksum differ are compared row by row, as counts of
-- identical rows (a purchase log may hold two identical rows). A changed group's stored rows close at
-- $snapshot_date and the delivered ones open there; the rest is untouched and stored once.
CREATE OR REPLACE TEMP TABLE changed_buckets AS
WITH stored AS (
    SELECT {bucket} AS bucket, count(*) AS row_count, sum(hash({columns})) AS checksum
    FROM {table} WHERE valid_to IS NULL GROUP BY ALL
), delivered AS (
    SELECT {bucket} AS bucket, count(*) AS row_count, sum(hash({columns})) AS checksum
    FROM staged GROUP BY ALL
)
SELECT coalesce(stored.bucket, delivered.bucket) AS bucket
FROM stored FULL OUTER JOIN delivered ON stored.bucket IS NOT DISTINCT FROM delivered.bucket
WHERE stored.row_count IS DISTINCT FROM delivered.row_count OR stored.checksum IS DISTINCT FROM delivered.checksum;

CREATE OR REPLACE TEMP TABLE changed_rows AS
WITH stored AS (
    SELECT {columns}, count(*) AS copies FROM {table}
    WHERE valid_to IS NULL AND {bucket} IN (SELECT bucket FROM changed_buckets WHERE bucket IS NOT NULL)
       OR valid_to IS NULL AND {bucket} IS NULL AND EXISTS (SELECT 1 FROM changed_buckets WHERE bucket IS NULL)
    GROUP BY ALL
), delivered AS (
    SELECT {columns}, count(*) AS copies FROM staged
    WHERE {bucket} IN (SELECT bucket FROM changed_buckets WHERE bucket IS NOT NULL)
       OR {bucket} IS NULL AND EXISTS (SELECT 1 FROM changed_buckets WHERE bucket IS NULL)
    GROUP BY ALL
)
SELECT {merged_columns}, coalesce(stored.copies, 0) AS stored_copies,
       coalesce(delivered.copies, 0) AS delivered_copies
FROM stored FULL OUTER JOIN delivered ON {same_row_stored_delivered}
WHERE coalesce(stored.copies, 0) <> coalesce(delivered.copies, 0);

UPDATE {table} SET valid_to = CAST($snapshot_date AS DATE)
FROM changed_rows
WHERE {table}.valid_to IS NULL AND changed_rows.stored_copies > 0 AND {same_row_table_changed};

INSERT INTO {table}
SELECT {columns}, CAST($snapshot_date AS DATE) AS valid_from, CAST(NULL AS DATE) AS valid_to, $load_id AS load_id
FROM (SELECT *, unnest(range(delivered_copies)) AS copy FROM changed_rows WHERE delivered_copies > 0);
