-- name: production-history
-- Every version of a model that was live in an environment: from when to when,
-- who approved it for that environment beforehand, who deployed it, and what ended it.
-- param: model text: The model, e.g. fraud.detector.xgb.
-- param: env text = production: The environment.
SELECT version, ts AS deployed_at, until, deployed_by, approved_by, rollback, ended, comment
FROM (
    SELECT d.seq, d.version, d.ts, d.until, d.actor AS deployed_by, d.approved_by, d.rollback,
           CASE WHEN d.live THEN 'still live'
                WHEN d.replaced_by IS NULL THEN 'undeployed'
                ELSE 'replaced by ' || d.model || ':' || d.replaced_by END AS ended,
           d.comment
    FROM deployments d
    WHERE d.action = 'deploy' AND d.model = $model AND d.env = $env)
ORDER BY seq;
