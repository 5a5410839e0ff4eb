-- A full extract for $snapshot_date between stored drops (a late drop, or an older drop delivered again):
-- the rows valid over [$snapshot_date, $next_date) become exactly the delivered ones. Rows crossing either
-- date are first split there, so the drops before and after keep exactly their rows.
INSERT INTO {table}
SELECT {columns}, CAST($snapshot_date AS DATE), valid_to, load_id FROM {table}
WHERE valid_from < CAST($snapshot_date AS DATE)
  AND (valid_to IS NULL OR valid_to > CAST($snapshot_date AS DATE));

UPDATE {table} SET valid_to = CAST($snapshot_date AS DATE)
WHERE valid_from < CAST($snapshot_date AS DATE)
  AND (valid_to IS NULL OR valid_to > CAST($snapshot_date AS DATE));

INSERT INTO {table}
SELECT {columns}, CAST($next_date AS DATE), valid_to, load_id FROM {table}
WHERE valid_from = CAST($snapshot_date AS DATE) AND (valid_to IS NULL OR valid_to > CAST($next_date AS DATE));

UPDATE {table} SET valid_to = CAST($next_date AS DATE)
WHERE valid_from = CAST($snapshot_date AS DATE) AND (valid_to IS NULL OR valid_to > CAST($next_date AS DATE));

DELETE FROM {table} WHERE valid_from = CAST($snapshot_date AS DATE);

INSERT INTO {table}
SELECT {columns}, CAST($snapshot_date AS DATE), CAST($next_date AS DATE), $load_id FROM staged;
