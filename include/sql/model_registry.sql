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

-- Registries written before paths were relative to the model store kept absolute paths, which break
-- when the warehouse moves (another folder, the compose image, a restore elsewhere): keep <model_id>/model.pkl.
UPDATE model_registry
SET path = regexp_extract(path, '([^/]+/model\.pkl)$', 1)
WHERE starts_with(path, '/');

-- When retention removed the model's files (python -m batchops prune); the decision stays in the registry.
ALTER TABLE model_registry ADD COLUMN IF NOT EXISTS pruned_at TIMESTAMP;
