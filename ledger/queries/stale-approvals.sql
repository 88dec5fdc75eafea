-- name: stale-approvals
-- Approvals at least N days old (at the as-of instant, else now) that were never
-- followed by a deployment of that version to that environment, for versions
-- neither rejected nor deprecated: standing permissions someone could still use.
-- param: days int = 30: Minimum age of the approval in days.
-- param: env text optional: Only this environment (default: every environment).
SELECT a.seq, a.ts AS approved_at, a.ref, a.env, a.actor AS approved_by,
       CAST(floor((epoch((SELECT ts FROM as_of)) - epoch(a.ts)) / 86400) AS BIGINT) AS age_days
FROM approvals a
WHERE a.ts <= (SELECT ts FROM as_of) - to_days($days)
  AND ($env IS NULL OR a.env = $env)
  AND NOT EXISTS (
      SELECT 1 FROM events d
      WHERE d.action = 'deploy' AND d.model = a.model AND d.version = a.version
        AND d.env = a.env AND d.seq > a.seq)
  AND NOT EXISTS (
      SELECT 1 FROM events x
      WHERE x.action IN ('reject', 'deprecate') AND x.model = a.model
        AND x.version = a.version)
ORDER BY a.seq;
