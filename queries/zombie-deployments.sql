-- name: zombie-deployments
-- Versions still live in an environment although they were deprecated or
-- rejected after being deployed.
-- param: env text optional: Only this environment (default: every environment).
SELECT l.ref, l.env, l.since, l.deployed_by, mv.status,
       coalesce(mv.deprecated_at, mv.rejected_at) AS retired_at
FROM live l
JOIN model_versions mv ON mv.model = l.model AND mv.version = l.version
WHERE mv.status IN ('deprecated', 'rejected')
  AND ($env IS NULL OR l.env = $env)
ORDER BY l.ref, l.env;
