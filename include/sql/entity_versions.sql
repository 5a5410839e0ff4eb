-- An entity's table keeps every version of its rows once, with the deliveries it is valid for:
--   valid_from = the drop (snapshot_date) that delivered this version
--   valid_to   = the drop from which it no longer is (exclusive); NULL: still valid
-- The rows a run of drop D sees are those with valid_from <= D AND (valid_to IS NULL OR valid_to > D):
-- never a later drop's rows (point in time by delivery). {table} and {columns} are validated, quoted names.
CREATE TABLE IF NOT EXISTS {table} AS
    SELECT {columns}, CAST(NULL AS DATE) AS valid_from, CAST(NULL AS DATE) AS valid_to,
           CAST(NULL AS VARCHAR) AS load_id
    FROM staged LIMIT 0;
