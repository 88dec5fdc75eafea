-- name: dataset-exposure
-- Versions live in an environment whose lineage (the version itself or any
-- ancestor) was trained on a dataset, matched by digest, URI or name; e.g. a
-- dataset later found to contain personal data.
-- param: dataset digest: A dataset digest (sha256:HEX, the 64 hex digits, or 12+ of them), URI or name.
-- param: env text = production: The environment.
WITH RECURSIVE
edges AS MATERIALIZED (SELECT model, version, parent_model, parent_version FROM lineage),
hit AS MATERIALIZED (
    -- The payload text holds the value JSON-quoted: a cheap substring test first, so
    -- that only candidate registrations have their datasets parsed.
    SELECT r.model, r.version, d.name, d.uri, d.digest
    FROM registrations r, unnest(r.datasets) AS t(d)
    WHERE contains(r.payload, to_json($dataset::VARCHAR)::VARCHAR)
      AND (d.digest = $dataset OR d.uri = $dataset OR d.name = $dataset)),
down(model, version, src_model, src_version, depth) AS (
    SELECT DISTINCT model, version, model, version, 0 FROM hit
    UNION
    SELECT e.model, e.version, d.src_model, d.src_version, d.depth + 1
    FROM down d JOIN edges e ON e.parent_model = d.model AND e.parent_version = d.version)
SELECT l.ref, l.env, l.since, l.deployed_by,
       d.src_model || ':' || d.src_version AS trained_on_via, d.depth AS generations,
       h.name AS dataset, h.uri, h.digest
FROM live_deploys l
JOIN down d ON d.model = l.model AND d.version = l.version
JOIN hit h ON h.model = d.src_model AND h.version = d.src_version
WHERE l.env = $env
ORDER BY l.ref, generations, trained_on_via, dataset;
