-- One row per (snapshot, entity): which run loaded it last and how many rows it has.
CREATE TABLE IF NOT EXISTS load_audit (
    snapshot_date DATE,
    entity VARCHAR,
    load_id VARCHAR,
    row_count BIGINT,
    loaded_at TIMESTAMP,
    PRIMARY KEY (snapshot_date, entity)
);

INSERT OR REPLACE INTO load_audit
    VALUES (CAST($snapshot_date AS DATE), $entity, $load_id, $row_count, now()::TIMESTAMP);
