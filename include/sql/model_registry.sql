-- Every trained model of the provider, approved or rejected, with why.
CREATE TABLE IF NOT EXISTS model_registry (
    model_id           VARCHAR PRIMARY KEY,
    pipeline           VARCHAR,
    training_snapshot  DATE,
    trained_in_run     VARCHAR,
    status             VARCHAR,
    reason             VARCHAR,
    roc_auc            DOUBLE,
    champion_model_id  VARCHAR,
    champion_roc_auc   DOUBLE,
    sha256             VARCHAR,
    path               VARCHAR,
    features           VARCHAR,
    registered_at      TIMESTAMP
);
