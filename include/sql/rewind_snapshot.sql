-- Undo the load of the latest drop $snapshot_date of a snapshot entity (to load it again): the rows it opened
-- go, the rows it closed are open again. What is left is the state of the drop before it.
DELETE FROM {table} WHERE valid_from = CAST($snapshot_date AS DATE);

UPDATE {table} SET valid_to = NULL WHERE valid_to = CAST($snapshot_date AS DATE);
