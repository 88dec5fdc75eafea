-- name: break-glass
-- Every break-glass override: the admin who granted it, the one action and the one
-- policy rule it covers, the justification, and the event that used it (NULL while
-- unused; a grant is spent by the first later event citing it in its payload).
SELECT g.seq, g.ts, g.actor AS granted_by, g.payload ->> '$.action' AS action,
       (g.payload ->> '$.model')
           || coalesce(':' || (g.payload ->> '$.version'), '') AS ref,
       g.payload ->> '$.env' AS env, g.payload ->> '$.rule' AS rule,
       g.payload ->> '$.justification' AS justification,
       u.seq AS used_by_seq, u.ts AS used_at, u.actor AS used_by
FROM events g
LEFT JOIN LATERAL (
    SELECT e.seq, e.ts, e.actor FROM events e
    WHERE e.seq > g.seq
      AND list_contains(coalesce(TRY_CAST(e.payload -> '$.break_glass' AS BIGINT[]), []), g.seq)
    ORDER BY e.seq LIMIT 1) u ON true
WHERE g.action = 'break_glass'
ORDER BY g.seq;
