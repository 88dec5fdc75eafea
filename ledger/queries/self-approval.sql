-- name: self-approval
-- Separation of duties: approvals signed by the version's own registrant, and
-- deployments by someone who also approved that version for that environment.
-- param: env text optional: Only this environment, e.g. one where policy forbids it (default: every environment).
WITH violations AS (
    SELECT a.seq, a.ts, 'approver is registrant' AS violation, a.ref, a.env, a.actor,
           r.seq AS conflicting_seq
    FROM approvals a
    JOIN registrations r ON r.model = a.model AND r.version = a.version
    WHERE a.actor = r.registered_by
    UNION ALL
    SELECT d.seq, d.ts, 'deployer approved it', d.ref, d.env, d.actor, min(a.seq)
    FROM events d
    JOIN approvals a
      ON a.model = d.model AND a.version = d.version AND a.env = d.env
     AND a.seq < d.seq AND a.actor = d.actor
    WHERE d.action = 'deploy'
    GROUP BY ALL)
SELECT seq, ts, violation, ref, env, actor, conflicting_seq
FROM violations
WHERE $env IS NULL OR env = $env
ORDER BY seq;
