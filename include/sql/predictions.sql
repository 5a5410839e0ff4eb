-- predictions: one row per (customer_id, snapshot_date, model_id); a re-run replaces its own rows.
CREATE TABLE IF NOT EXISTS predictions (
    customer_id    VARCHAR,
    score          DOUBLE,
    snapshot_date  DATE,
    model_id       VARCHAR,
    run_id         VARCHAR
);

DELETE FROM predictions WHERE snapshot_date = CAST($snapshot_date AS DATE) AND model_id = $model_id;

INSERT INTO predictions BY NAME
    SELECT customer_id, score, snapshot_date, model_id, $run_id AS run_id
    FROM read_parquet($predictions_path);
