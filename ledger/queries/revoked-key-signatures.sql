-- name: revoked-key-signatures
-- Events signed by a key that was revoked later (approvals and deployments to
-- re-check), and events signed after their key was revoked (the write path refuses
-- them, so this part must be empty: the query proves it).
-- param: actions text = approve,deploy: Comma-separated actions to list for keys revoked later, or 'all'.
SELECT e.seq, e.ts, e.action, e.ref, e.env, e.actor, e.key_id,
       CASE WHEN e.seq > k.revoked_seq THEN 'signed after revocation'
            ELSE 'key revoked later' END AS finding,
       k.revoked_seq, k.revoked_at, k.reason
FROM events e
JOIN keys k ON k.key_id = e.key_id
WHERE k.revoked_seq IS NOT NULL
  AND (e.seq > k.revoked_seq
       OR $actions = 'all'
       OR list_contains(string_split(replace($actions, ' ', ''), ','), e.action))
ORDER BY e.seq;
