-- The rows of an incremental drop with a primary key ({key}): new keys and corrections. Each key's
-- versions are valid from the drop that delivered them until the next drop that delivered that key again,
-- so a later correction wins from its drop on, and a run of an earlier drop still sees what it saw.
-- Loading a drop again replaces exactly its own versions (a late drop between others works the same).
CREATE OR REPLACE TEMP TABLE touched_keys AS
SELECT {key} FROM {table} WHERE valid_from = CAST($snapshot_date AS DATE)
UNION
SELECT {key} FROM staged;

DELETE FROM {table} WHERE valid_from = CAST($snapshot_date AS DATE);

INSERT INTO {table}
SELECT {columns}, CAST($snapshot_date AS DATE), CAST(NULL AS DATE), $load_id FROM staged;

UPDATE {table} SET valid_to = versions.next_from
FROM (
    SELECT {key}, valid_from, lead(valid_from) OVER (PARTITION BY {key} ORDER BY valid_from) AS next_from
    FROM {table} SEMI JOIN touched_keys USING ({key})
) AS versions
WHERE {same_key_table_versions} AND {table}.valid_from = versions.valid_from
  AND {table}.valid_to IS DISTINCT FROM versions.next_from;
