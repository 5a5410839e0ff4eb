-- The rows of an incremental drop (delivery: incremental) without a primary key: appended as this drop's
-- rows, valid from $snapshot_date on. Loading the drop again replaces exactly its own rows.
DELETE FROM {table} WHERE valid_from = CAST($snapshot_date AS DATE);

INSERT INTO {table}
SELECT {columns}, CAST($snapshot_date AS DATE), CAST(NULL AS DATE), $load_id FROM staged;
