-- name: policy-violations
-- Governance audit: every event that breaks the policy in force at its time (set by
-- the last policy_set before it), one row per broken rule, with what was wrong and the
-- break-glass grant that overrode it (covered_by; NULL means an open violation, which
-- makes `ledger verify --policy` fail). Events before the first policy break nothing.
-- The same rules as ledger/policy.py, over the same views.
-- param: rule text optional: Only this rule (approvals, separation_of_duties, register_metadata, promotion_order, signers, break_glass).
-- param: open int = 0: 1 lists only the violations no break-glass override covers.
WITH policies AS (
    SELECT seq AS policy_seq, payload -> '$.policy' AS p
    FROM events WHERE action = 'policy_set'),
ev AS (  -- every event, with the policy in force just before it (NULL before the first)
    SELECT e.*, pol.policy_seq, pol.p,
           coalesce((pol.p ->> '$.separation_of_duties.registrant_may_not_approve') = 'true',
                    false) AS no_self_approval,
           coalesce((pol.p ->> '$.separation_of_duties.approver_may_not_deploy') = 'true',
                    false) AS no_approver_deploy
    FROM events e ASOF LEFT JOIN policies pol ON e.seq > pol.policy_seq),
deploys AS (
    SELECT ev.*, r.registered_by,
           coalesce(TRY_CAST(json_extract(ev.p, '$.approvals.required."' || ev.env || '"')
                             AS BIGINT), 0) AS needed,
           TRY_CAST(ev.p ->> '$.approvals.max_age_days' AS BIGINT) AS max_age_days,
           coalesce(TRY_CAST(ev.p -> '$.promotion_order.environments' AS VARCHAR[]), [])
               AS chain
    FROM ev JOIN registrations r ON r.model = ev.model AND r.version = ev.version
    WHERE ev.action = 'deploy' AND ev.p IS NOT NULL),
counted AS (  -- distinct approvers that count for each deploy
    SELECT d.seq, count(DISTINCT a.actor) AS n, string_agg(DISTINCT a.actor, ', ') AS who
    FROM deploys d JOIN approvals a
      ON a.model = d.model AND a.version = d.version AND a.env = d.env AND a.seq < d.seq
    WHERE NOT (d.no_self_approval AND a.actor = d.registered_by)
      AND (d.max_age_days IS NULL OR a.ts >= d.ts - to_days(d.max_age_days::INTEGER))
    GROUP BY d.seq),
regs AS (
    SELECT ev.*, r.artifact_digest, r.code_commit, r.datasets, r.tags, r.metrics,
           ev.p -> '$.register_metadata' AS m
    FROM ev JOIN registrations r USING (seq)
    WHERE ev.action = 'register' AND ev.p IS NOT NULL),
thresholds AS (
    SELECT regs.seq, t.spec,
           regexp_extract(t.spec, '^\s*([A-Za-z0-9_][A-Za-z0-9_.:/-]*)\s*(>=|<=|==|>|<)\s*(\S+)\s*$',
                          ['metric', 'op', 'value']) AS th,
           regs.metrics
    FROM regs, unnest(coalesce(TRY_CAST(regs.m -> '$.metrics' AS VARCHAR[]), [])) AS t(spec)),
signer_rules AS (
    SELECT ev.seq, ev.action, ev.env, ev.actor, ev.key_id, s.r,
           TRY_CAST(s.r -> '$.actors' AS VARCHAR[]) AS actors,
           TRY_CAST(s.r -> '$.keys' AS VARCHAR[]) AS keys,
           TRY_CAST(s.r -> '$.roles' AS VARCHAR[]) AS roles
    FROM ev, unnest(coalesce(TRY_CAST(ev.p -> '$.signers' AS JSON[]), [])) AS s(r)
    WHERE (s.r ->> '$.action') = ev.action
      AND ((s.r ->> '$.env') IS NULL OR (s.r ->> '$.env') = ev.env)),
citations AS (  -- break-glass grants each event cites
    SELECT ev.seq, c.g, ev.action, ev.model, ev.version, ev.env
    FROM ev, unnest(coalesce(TRY_CAST(ev.payload -> '$.break_glass' AS BIGINT[]), [])) AS c(g)),
grants AS (
    SELECT seq AS grant_seq, payload ->> '$.rule' AS rule, payload ->> '$.action' AS action,
           payload ->> '$.model' AS model, TRY_CAST(payload ->> '$.version' AS BIGINT) AS version,
           payload ->> '$.env' AS env
    FROM events WHERE action = 'break_glass'),
first_use AS (SELECT g, min(seq) AS seq FROM citations GROUP BY g),
valid AS (  -- citations of a grant that exists, matches the event and is used here first
    SELECT c.seq, c.g, gr.rule
    FROM citations c
    JOIN grants gr ON gr.grant_seq = c.g AND gr.grant_seq < c.seq
    JOIN first_use f ON f.g = c.g AND f.seq = c.seq
    WHERE gr.action = c.action
      AND (gr.model IS NULL OR gr.model = c.model)
      AND (gr.version IS NULL OR gr.version = c.version)
      AND (gr.env IS NULL OR gr.env = c.env)),
found AS (
    SELECT d.seq, 'approvals' AS rule,
           'needs approvals from ' || d.needed || ' distinct approvers for ' || d.env
           || ', has ' || coalesce(c.n, 0)
           || coalesce(' (' || c.who || ')', '') AS detail
    FROM deploys d LEFT JOIN counted c USING (seq)
    WHERE d.needed > coalesce(c.n, 0)
    UNION ALL
    SELECT ev.seq, 'separation_of_duties', ev.actor || ' registered ' || ev.ref || ' and approved it'
    FROM ev JOIN registrations r ON r.model = ev.model AND r.version = ev.version
    WHERE ev.action = 'approve' AND ev.no_self_approval AND ev.actor = r.registered_by
    UNION ALL
    SELECT d.seq, 'separation_of_duties',
           d.actor || ' approved ' || d.ref || ' for ' || d.env || ' and deployed it there'
    FROM deploys d
    WHERE d.no_approver_deploy AND EXISTS (
        SELECT 1 FROM approvals a
        WHERE a.model = d.model AND a.version = d.version AND a.env = d.env
          AND a.seq < d.seq AND a.actor = d.actor)
    UNION ALL
    SELECT d.seq, 'promotion_order',
           d.ref || ' was not deployed to ' || d.chain[list_position(d.chain, d.env) - 1]
           || ' before ' || d.env
    FROM deploys d
    WHERE coalesce(list_position(d.chain, d.env), 0) > 1 AND NOT EXISTS (
        SELECT 1 FROM deployment_log x
        WHERE x.action = 'deploy' AND x.model = d.model AND x.version = d.version
          AND x.env = d.chain[list_position(d.chain, d.env) - 1] AND x.seq < d.seq)
    UNION ALL
    SELECT seq, 'register_metadata', 'no artifact digest' FROM regs
    WHERE (m ->> '$.artifact_digest') = 'true' AND artifact_digest IS NULL
    UNION ALL
    SELECT seq, 'register_metadata',
           'needs ' || (m ->> '$.datasets_with_digest') || ' datasets with a digest, has '
           || len(list_filter(datasets, lambda d: d.digest IS NOT NULL))
    FROM regs
    WHERE len(list_filter(datasets, lambda d: d.digest IS NOT NULL))
          < coalesce(TRY_CAST(m ->> '$.datasets_with_digest' AS BIGINT), 0)
    UNION ALL
    SELECT seq, 'register_metadata', 'no code commit' FROM regs
    WHERE (m ->> '$.code_commit') = 'true' AND code_commit IS NULL
    UNION ALL
    SELECT seq, 'register_metadata', 'missing tags ' || array_to_string(missing, ', ')
    FROM (SELECT seq, list_filter(coalesce(TRY_CAST(m -> '$.tags' AS VARCHAR[]), []),
                                  lambda t: coalesce(tags ->> ('$."' || t || '"'), '') = '')
                          AS missing
          FROM regs)
    WHERE len(missing) > 0
    UNION ALL
    SELECT seq, 'register_metadata',
           'needs metric ' || th.metric || ' ' || th.op || ' ' || th.value || ', has '
           || coalesce(th.metric || '=' || (metrics ->> ('$."' || th.metric || '"')), 'none')
    FROM (SELECT seq, th,
                 TRY_CAST(json_extract(metrics, '$."' || th.metric || '"') AS DOUBLE) AS got,
                 TRY_CAST(th.value AS DOUBLE) AS bound, metrics
          FROM thresholds)
    WHERE got IS NULL
       OR NOT CASE th.op WHEN '>=' THEN got >= bound WHEN '>' THEN got > bound
                         WHEN '<=' THEN got <= bound WHEN '<' THEN got < bound
                         ELSE got = bound END
    UNION ALL
    SELECT seq, 'signers', 'only ' || array_to_string(actors, ', ') || ' may sign this; '
           || actor || ' may not'
    FROM signer_rules WHERE actors IS NOT NULL AND NOT list_contains(actors, actor)
    UNION ALL
    SELECT seq, 'signers', 'only keys ' || array_to_string(keys, ', ') || ' may sign this; '
           || key_id || ' may not'
    FROM signer_rules WHERE keys IS NOT NULL AND NOT list_contains(keys, key_id)
    UNION ALL
    SELECT s.seq, 'signers', 'the key lacks the roles ' || array_to_string(s.roles, ', ')
    FROM signer_rules s LEFT JOIN keys k USING (key_id)
    WHERE s.roles IS NOT NULL AND NOT list_has_all(coalesce(k.roles, []), s.roles)
    UNION ALL
    SELECT c.seq, 'break_glass', 'cites seq ' || c.g || ', not an unused break-glass grant for it'
    FROM citations c ANTI JOIN valid v ON v.seq = c.seq AND v.g = c.g
    UNION ALL
    SELECT seq, 'break_glass', 'payload break_glass is not a list of grant seqs'
    FROM ev
    WHERE (payload -> '$.break_glass') IS NOT NULL
      AND TRY_CAST(payload -> '$.break_glass' AS BIGINT[]) IS NULL)
SELECT f.seq, ev.ts, ev.action, ev.ref, ev.env, ev.actor, ev.policy_seq, f.rule, f.detail,
       (SELECT min(v.g) FROM valid v WHERE v.seq = f.seq AND v.rule = f.rule) AS covered_by
FROM found f JOIN ev USING (seq)
WHERE ($rule IS NULL OR f.rule = $rule)
  AND ($open = 0 OR covered_by IS NULL)
ORDER BY f.seq, f.rule, f.detail;
