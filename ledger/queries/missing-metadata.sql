-- name: missing-metadata
-- Versions live now whose registration lacks required provenance: no dataset,
-- no code commit or no artifact digest.
-- param: env text optional: Only this environment (default: every environment).
SELECT ref, env, since, deployed_by, registered_by,
       concat_ws(', ',
                 CASE WHEN no_dataset THEN 'dataset' END,
                 CASE WHEN no_commit THEN 'code commit' END,
                 CASE WHEN no_digest THEN 'artifact digest' END) AS missing
FROM (
    SELECT l.ref, l.env, l.since, l.deployed_by, r.actor AS registered_by,
           coalesce(json_array_length(r.payload, '$.datasets'), 0) = 0 AS no_dataset,
           r.payload ->> '$.code.commit' IS NULL AS no_commit,
           r.payload ->> '$.artifact.digest' IS NULL AS no_digest
    FROM live_deploys l
    JOIN events r ON r.action = 'register' AND r.model = l.model AND r.version = l.version
    WHERE $env IS NULL OR l.env = $env)
WHERE no_dataset OR no_commit OR no_digest
ORDER BY ref, env;
