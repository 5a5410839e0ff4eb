-- Move an entity table written before entity versions (one full copy of every row per snapshot_date) to
-- versions: every run of identical rows over consecutive loaded drops becomes one version, valid from the
-- first of those drops to the drop after the last (NULL when that is the latest). Identical rows within one
-- drop are told apart by their number among them (occurrence).
CREATE TABLE {new_table} AS
WITH loaded AS (
    SELECT snapshot_date, row_number() OVER (ORDER BY snapshot_date) AS position,
           lead(snapshot_date) OVER (ORDER BY snapshot_date) AS next_date
    FROM (SELECT DISTINCT snapshot_date FROM {table})
), numbered AS (
    SELECT {columns}, {table}.snapshot_date, {table}.load_id, loaded.position, loaded.next_date,
           row_number() OVER (PARTITION BY {columns}, {table}.snapshot_date) AS occurrence
    FROM {table} JOIN loaded USING (snapshot_date)
), runs AS (
    SELECT *, position - row_number() OVER (PARTITION BY {columns}, occurrence ORDER BY position) AS run
    FROM numbered
)
SELECT {columns}, version.valid_from, loaded.next_date AS valid_to, version.load_id
FROM (
    SELECT {columns}, min(snapshot_date) AS valid_from, max(position) AS last_position,
           arg_min(load_id, position) AS load_id
    FROM runs GROUP BY {columns}, occurrence, run
) AS version JOIN loaded ON loaded.position = version.last_position;
