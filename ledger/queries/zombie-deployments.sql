-- name: zombie-deployments
-- Versions still live in an environment although they were deprecated or
-- rejected after being deployed.
-- param: env text optional: Only this environment (default: every environment).
SELECT l.ref, l.env, l.since, l.deployed_by,
       CASE WHEN count(*) FILTER (WHERE x.action = 'deprecate') > 0 THEN 'deprecated'
            ELSE 'rejected' END AS status,
       coalesce(min(x.ts) FILTER (WHERE x.action = 'deprecate'),
                min(x.ts) FILTER (WHERE x.action = 'reject')) AS retired_at
FROM live_deploys l
JOIN events x ON x.action IN ('deprecate', 'reject') AND x.model = l.model
             AND x.version = l.version
WHERE $env IS NULL OR l.env = $env
GROUP BY l.ref, l.env, l.since, l.deployed_by
ORDER BY l.ref, l.env;
