-- name: missing-metadata
-- Versions live now whose registration lacks required provenance: no dataset,
-- no code commit or no artifact digest.
-- param: env text optional: Only this environment (default: every environment).
SELECT l.ref, l.env, l.since, l.deployed_by, r.registered_by,
       concat_ws(', ',
                 CASE WHEN len(r.datasets) = 0 THEN 'dataset' END,
                 CASE WHEN r.code_commit IS NULL THEN 'code commit' END,
                 CASE WHEN r.artifact_digest IS NULL THEN 'artifact digest' END) AS missing
FROM live l
JOIN registrations r ON r.model = l.model AND r.version = l.version
WHERE (len(r.datasets) = 0 OR r.code_commit IS NULL OR r.artifact_digest IS NULL)
  AND ($env IS NULL OR l.env = $env)
ORDER BY l.ref, l.env;
