-- name: unapproved-deployments
-- Deployments made without a prior approval of that version for that environment.
-- param: env text optional: Only deployments to this environment (default: every environment).
SELECT seq, ts, ref, env, actor AS deployed_by, comment
FROM deployments
WHERE action = 'deploy'
  AND len(approved_by) = 0
  AND ($env IS NULL OR env = $env)
ORDER BY seq;
