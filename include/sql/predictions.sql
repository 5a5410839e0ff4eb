-- predictions: one row per (customer_id, snapshot_date). Scoring a snapshot again (a re-run, a second run
-- of the same snapshot, or the scoring pipeline) replaces its rows, whichever model scored them before;
-- each run's own predictions stay in its run folder.
CREATE TABLE IF NOT EXISTS predictions (
    customer_id    VARCHAR,
    score          DOUBLE,
    snapshot_date  DATE,
    model_id       VARCHAR,
    run_id         VARCHAR
);

DELETE FROM predictions WHERE snapshot_date = CAST($snapshot_date AS DATE);

INSERT INTO predictions BY NAME
    SELECT customer_id, score, snapshot_date, model_id, $run_id AS run_id
    FROM read_parquet($predictions_path);
