-- Idempotent replace of one snapshot of one entity (run inside one transaction by the load stage).
-- {table} is a validated, quoted identifier; every value is a bound parameter.
CREATE TABLE IF NOT EXISTS {table} AS
    SELECT *, CAST(NULL AS DATE) AS snapshot_date, CAST(NULL AS VARCHAR) AS load_id
    FROM read_parquet($staging_path) LIMIT 0;

DELETE FROM {table} WHERE snapshot_date = CAST($snapshot_date AS DATE);

INSERT INTO {table} BY NAME
    SELECT *, CAST($snapshot_date AS DATE) AS snapshot_date, $load_id AS load_id
    FROM read_parquet($staging_path);
