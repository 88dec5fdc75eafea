-- name: policy-violations
-- Governance audit: every event that breaks the policy in force at its time (set by
-- the last policy_set before it), one row per broken rule, with what was wrong and the
-- break-glass grant that overrode it (covered_by; NULL means an open violation, which
-- makes `ledger verify --policy` fail). Events before the first policy break nothing.
-- The same rules as ledger/policy.py, over the same views.
-- param: rule text optional: Only this rule (approvals, separation_of_duties, register_metadata, promotion_order, signers, environments, naming, promotion_criteria, break_glass).
-- param: open int = 0: 1 lists only the violations no break-glass override covers.
WITH
-- Kept fast on large ledgers: each rule reads only the events it judges. Deploys,
-- approvals and registrations are semi-joined to the policies first (a ledger with no
-- policy_set reads none of them), then ASOF-joined to the policy in force; signers rules
-- read only the actions they name; each policy's settings are parsed once. Only the
-- break-glass check reads every payload, with a text test before any JSON parsing.
policies AS (  -- each policy_set, its settings parsed once
    SELECT seq AS policy_seq, p,
           coalesce((p ->> '$.separation_of_duties.registrant_may_not_approve') = 'true',
                    false) AS no_self_approval,
           coalesce((p ->> '$.separation_of_duties.approver_may_not_deploy') = 'true',
                    false) AS no_approver_deploy,
           p -> '$.approvals.required' AS required,
           TRY_CAST(p ->> '$.approvals.max_age_days' AS BIGINT) AS max_age_days,
           coalesce(TRY_CAST(p -> '$.promotion_order.environments' AS VARCHAR[]), []) AS chain,
           p -> '$.register_metadata' AS m,
           -- format 2's rules: a format-1 document (format absent or 1) has none of them
           CASE WHEN v2 THEN p -> '$.register_metadata.tag_values' END AS tag_values,
           CASE WHEN v2 THEN p -> '$.register_metadata.tag_patterns' END AS tag_patterns,
           CASE WHEN v2 THEN TRY_CAST(p -> '$.environments.allowed' AS VARCHAR[]) END
               AS allowed_envs,
           CASE WHEN v2 THEN p ->> '$.naming.model' END AS naming,
           CASE WHEN v2 THEN p -> '$.promotion_criteria' END AS criteria
    FROM (SELECT seq, payload -> '$.policy' AS p,
                 coalesce(TRY_CAST(payload ->> '$.policy.format' AS BIGINT), 1) >= 2 AS v2
          FROM events WHERE action = 'policy_set')),
signer_rules AS (  -- each policy's signers rules, one row per rule
    SELECT pol.policy_seq, s.r ->> '$.action' AS action, s.r ->> '$.env' AS env,
           TRY_CAST(s.r -> '$.actors' AS VARCHAR[]) AS actors,
           TRY_CAST(s.r -> '$.keys' AS VARCHAR[]) AS keys,
           TRY_CAST(s.r -> '$.roles' AS VARCHAR[]) AS roles
    FROM policies pol, unnest(coalesce(TRY_CAST(pol.p -> '$.signers' AS JSON[]), [])) AS s(r)),
deploys AS (
    SELECT e.seq, e.ts, e.action, e.ref, e.env, e.actor, e.model, e.version, pol.policy_seq,
           pol.no_approver_deploy, pol.no_self_approval, pol.max_age_days, pol.chain,
           pol.allowed_envs, pol.criteria, r.registered_by, r.metrics,
           coalesce(TRY_CAST(json_extract(pol.required, '$."' || e.env || '"') AS BIGINT), 0)
               AS needed
    -- (an alias_set is governed as a deploy to the environment of the alias's name, for
    -- the approvals and separation of duties only: the other rules are about deploys)
    FROM (SELECT * FROM events WHERE action IN ('deploy', 'alias_set')) e
    SEMI JOIN policies first ON e.seq > first.policy_seq  -- (no scan at all if no policy)
    ASOF JOIN policies pol ON e.seq > pol.policy_seq
    JOIN registrations r ON r.model = e.model AND r.version = e.version
    WHERE pol.p IS NOT NULL),
counted AS (  -- distinct approvers that count for each deploy
    SELECT d.seq, count(DISTINCT a.actor) AS n, string_agg(DISTINCT a.actor, ', ') AS who
    FROM deploys d
    JOIN (SELECT * FROM approvals a SEMI JOIN deploys d USING (model, version)) a
      ON a.model = d.model AND a.version = d.version AND a.env = d.env AND a.seq < d.seq
    WHERE NOT (d.no_self_approval AND a.actor = d.registered_by)
      AND (d.max_age_days IS NULL OR a.ts >= d.ts - to_days(d.max_age_days::INTEGER))
    GROUP BY d.seq),
self_approved AS (  -- approvals by the version's registrant, where the policy forbids it
    SELECT e.seq, e.ts, e.action, e.ref, e.env, e.actor, pol.policy_seq
    FROM (SELECT * FROM events WHERE action = 'approve') e
    SEMI JOIN policies first ON e.seq > first.policy_seq  -- (no scan at all if no policy)
    ASOF JOIN policies pol ON e.seq > pol.policy_seq
    JOIN registrations r ON r.model = e.model AND r.version = e.version
    WHERE pol.no_self_approval AND e.actor = r.registered_by),
approves AS (  -- approvals under a policy that closes the list of environments
    SELECT e.seq, e.ts, e.action, e.ref, e.env, e.actor, pol.policy_seq, pol.allowed_envs
    FROM (SELECT * FROM events WHERE action = 'approve') e
    SEMI JOIN (SELECT policy_seq FROM policies WHERE allowed_envs IS NOT NULL) first
      ON e.seq > first.policy_seq
    ASOF JOIN policies pol ON e.seq > pol.policy_seq
    WHERE pol.allowed_envs IS NOT NULL),
criteria AS (  -- each deploy's promotion criteria for its environment, parsed
    SELECT d.seq, d.ts, d.action, d.ref, d.env, d.actor, d.policy_seq, d.model, d.version,
           d.metrics, c.spec,
           regexp_extract(c.spec, '^\s*([A-Za-z0-9_][A-Za-z0-9_.:/-]{0,63})\s*(>=|<=|==|>|<)\s*'
                          || '(?:(live(?::[a-z][a-z0-9_-]{0,31})?|previous)(?:\s*([+-])\s*(\S+))?'
                          || '|(\S+))\s*$',
                          ['metric', 'op', 'base', 'sign', 'off', 'num']) AS cr
    FROM deploys d,
         unnest(coalesce(TRY_CAST(json_extract(d.criteria, '$."' || d.env || '".metrics')
                                  AS VARCHAR[]), [])) AS c(spec)
    WHERE d.criteria IS NOT NULL AND d.action = 'deploy'),
baselines AS (  -- the version each criterion compares with: live (in an env) or previous
    SELECT c.*,
           CASE WHEN c.cr.base = 'previous' THEN c.version - 1
                WHEN c.cr.base <> '' THEN (
                    SELECT CASE WHEN arg_max(x.action, x.seq) = 'deploy'
                                THEN arg_max(x.version, x.seq) END
                    FROM events x
                    WHERE x.action IN ('deploy', 'undeploy') AND x.model = c.model
                      AND x.seq < c.seq
                      AND x.env = coalesce(nullif(substr(c.cr.base, 6), ''), c.env)) END
               AS base_version
    FROM criteria c),
bounds AS (
    SELECT b.*, b.model || ':' || b.base_version AS base_ref,
           TRY_CAST(json_extract(b.metrics, '$."' || b.cr.metric || '"') AS DOUBLE) AS got,
           CASE WHEN b.cr.base = '' THEN TRY_CAST(b.cr.num AS DOUBLE)
                ELSE TRY_CAST(json_extract(r.metrics, '$."' || b.cr.metric || '"') AS DOUBLE)
                     + CASE WHEN b.cr.sign = '-' THEN -1 ELSE 1 END
                       * coalesce(TRY_CAST(nullif(b.cr.off, '') AS DOUBLE), 0) END AS bound
    FROM baselines b
    LEFT JOIN registrations r ON r.model = b.model AND r.version = b.base_version),
regs AS (
    SELECT e.seq, e.ts, e.action, e.ref, e.env, e.actor, e.model, pol.policy_seq,
           r.artifact_digest, r.code_commit, r.datasets, r.tags, r.metrics, pol.m,
           pol.tag_values, pol.tag_patterns, pol.naming
    FROM (SELECT seq, ts, action, ref, env, actor, model FROM events WHERE action = 'register') e
    SEMI JOIN policies first ON e.seq > first.policy_seq  -- (no scan at all if no policy)
    ASOF JOIN policies pol ON e.seq > pol.policy_seq
    JOIN registrations r USING (seq)
    WHERE pol.p IS NOT NULL),
thresholds AS (
    SELECT regs.seq, regs.ts, regs.action, regs.ref, regs.env, regs.actor, regs.policy_seq,
           regexp_extract(t.spec, '^\s*([A-Za-z0-9_][A-Za-z0-9_.:/-]*)\s*(>=|<=|==|>|<)\s*(\S+)\s*$',
                          ['metric', 'op', 'value']) AS th,
           regs.metrics
    FROM regs, unnest(coalesce(TRY_CAST(regs.m -> '$.metrics' AS VARCHAR[]), [])) AS t(spec)),
signed AS (  -- events an action's signers rule applies to, once per rule
    SELECT e.seq, e.ts, e.action, e.ref, e.env, e.actor, e.key_id, pol.policy_seq,
           s.actors, s.keys, s.roles
    FROM (SELECT * FROM events WHERE action IN (SELECT action FROM signer_rules)) e
    ASOF JOIN policies pol ON e.seq > pol.policy_seq
    JOIN signer_rules s ON s.policy_seq = pol.policy_seq AND s.action = e.action
    WHERE s.env IS NULL OR s.env = e.env),
citing AS (  -- events whose payload has a break_glass member (the text test skips parsing
             -- every payload: canonical JSON spells the key "break_glass" literally)
    SELECT e.seq, e.ts, e.action, e.ref, e.env, e.actor, e.model, e.version,
           e.payload -> '$.break_glass' AS cited, pol.policy_seq
    FROM (SELECT * FROM events WHERE contains(payload, '"break_glass"')) e
    ASOF LEFT JOIN policies pol ON e.seq > pol.policy_seq
    WHERE (e.payload -> '$.break_glass') IS NOT NULL),
citations AS (  -- break-glass grants each event cites
    SELECT e.seq, c.g, e.action, e.model, e.version, e.env
    FROM citing e, unnest(coalesce(TRY_CAST(e.cited AS BIGINT[]), [])) AS c(g)),
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
found AS (  -- each row: the event's columns for the output, the rule and what was wrong
    SELECT d.seq, d.ts, d.action, d.ref, d.env, d.actor, d.policy_seq, 'approvals' AS rule,
           'needs approvals from ' || d.needed || ' distinct approvers for ' || d.env
           || ', has ' || coalesce(c.n, 0)
           || coalesce(' (' || c.who || ')', '') AS detail
    FROM deploys d LEFT JOIN counted c USING (seq)
    WHERE d.needed > coalesce(c.n, 0)
    UNION ALL
    SELECT seq, ts, action, ref, env, actor, policy_seq, 'separation_of_duties',
           actor || ' registered ' || ref || ' and approved it'
    FROM self_approved
    UNION ALL
    SELECT d.seq, d.ts, d.action, d.ref, d.env, d.actor, d.policy_seq, 'separation_of_duties',
           d.actor || ' approved ' || d.ref || ' for ' || d.env || ' and deployed it there'
    FROM deploys d
    WHERE d.no_approver_deploy AND EXISTS (
        SELECT 1 FROM approvals a
        WHERE a.model = d.model AND a.version = d.version AND a.env = d.env
          AND a.seq < d.seq AND a.actor = d.actor)
    UNION ALL
    SELECT d.seq, d.ts, d.action, d.ref, d.env, d.actor, d.policy_seq, 'promotion_order',
           d.ref || ' was not deployed to ' || d.chain[list_position(d.chain, d.env) - 1]
           || ' before ' || d.env
    FROM deploys d
    WHERE d.action = 'deploy' AND coalesce(list_position(d.chain, d.env), 0) > 1 AND NOT EXISTS (
        SELECT 1 FROM deployment_log x
        WHERE x.action = 'deploy' AND x.model = d.model AND x.version = d.version
          AND x.env = d.chain[list_position(d.chain, d.env) - 1] AND x.seq < d.seq)
    UNION ALL
    SELECT seq, ts, action, ref, env, actor, policy_seq, 'register_metadata',
           'no artifact digest'
    FROM regs
    WHERE (m ->> '$.artifact_digest') = 'true' AND artifact_digest IS NULL
    UNION ALL
    SELECT seq, ts, action, ref, env, actor, policy_seq, 'register_metadata',
           'needs ' || (m ->> '$.datasets_with_digest') || ' datasets with a digest, has '
           || len(list_filter(datasets, lambda d: d.digest IS NOT NULL))
    FROM regs
    WHERE len(list_filter(datasets, lambda d: d.digest IS NOT NULL))
          < coalesce(TRY_CAST(m ->> '$.datasets_with_digest' AS BIGINT), 0)
    UNION ALL
    SELECT seq, ts, action, ref, env, actor, policy_seq, 'register_metadata', 'no code commit'
    FROM regs
    WHERE (m ->> '$.code_commit') = 'true' AND code_commit IS NULL
    UNION ALL
    SELECT seq, ts, action, ref, env, actor, policy_seq, 'register_metadata',
           'missing tags ' || array_to_string(missing, ', ')
    FROM (SELECT *, list_filter(coalesce(TRY_CAST(m -> '$.tags' AS VARCHAR[]), []),
                                lambda t: coalesce(tags ->> ('$."' || t || '"'), '') = '')
                        AS missing
          FROM regs)
    WHERE len(missing) > 0
    UNION ALL
    SELECT seq, ts, action, ref, env, actor, policy_seq, 'register_metadata',
           'needs metric ' || th.metric || ' ' || th.op || ' ' || th.value || ', has '
           || coalesce(th.metric || '=' || (metrics ->> ('$."' || th.metric || '"')), 'none')
    FROM (SELECT *,
                 TRY_CAST(json_extract(metrics, '$."' || th.metric || '"') AS DOUBLE) AS got,
                 TRY_CAST(th.value AS DOUBLE) AS bound
          FROM thresholds)
    WHERE got IS NULL
       OR NOT CASE th.op WHEN '>=' THEN got >= bound WHEN '>' THEN got > bound
                         WHEN '<=' THEN got <= bound WHEN '<' THEN got < bound
                         ELSE got = bound END
    UNION ALL
    SELECT seq, ts, action, ref, env, actor, policy_seq, 'register_metadata',
           'tag ' || t || ' is ' || (tags ->> ('$."' || t || '"')) || ', not one of '
           || array_to_string(allowed, ', ')
    FROM (SELECT *, TRY_CAST(json_extract(tag_values, '$."' || t || '"') AS VARCHAR[]) AS allowed
          FROM (SELECT *, unnest(json_keys(tag_values)) AS t FROM regs
                WHERE tag_values IS NOT NULL))
    WHERE (tags ->> ('$."' || t || '"')) IS NOT NULL
      AND NOT list_contains(allowed, tags ->> ('$."' || t || '"'))
    UNION ALL
    SELECT seq, ts, action, ref, env, actor, policy_seq, 'register_metadata',
           'tag ' || t || ' is ' || (tags ->> ('$."' || t || '"')) || ', not matching '
           || (tag_patterns ->> ('$."' || t || '"'))
    FROM (SELECT *, unnest(json_keys(tag_patterns)) AS t FROM regs
          WHERE tag_patterns IS NOT NULL)
    WHERE (tags ->> ('$."' || t || '"')) IS NOT NULL
      AND NOT regexp_full_match(tags ->> ('$."' || t || '"'),
                                tag_patterns ->> ('$."' || t || '"'))
    UNION ALL
    SELECT seq, ts, action, ref, env, actor, policy_seq, 'naming',
           'model name ' || model || ' does not match ' || naming
    FROM regs
    WHERE naming IS NOT NULL AND NOT regexp_full_match(model, naming)
    UNION ALL
    SELECT seq, ts, action, ref, env, actor, policy_seq, 'environments',
           env || ' is not one of ' || array_to_string(allowed_envs, ', ')
    FROM (SELECT seq, ts, action, ref, env, actor, policy_seq, allowed_envs FROM deploys
          WHERE action = 'deploy'
          UNION ALL
          SELECT seq, ts, action, ref, env, actor, policy_seq, allowed_envs FROM approves)
    WHERE len(allowed_envs) > 0 AND NOT list_contains(allowed_envs, env)
    UNION ALL
    SELECT seq, ts, action, ref, env, actor, policy_seq, 'promotion_criteria',
           'needs ' || spec || coalesce(' (' || base_ref || ': bound ' || bound || ')', '')
           || ', has ' || coalesce(cr.metric || '=' || got, 'none')
    FROM bounds
    WHERE bound IS NOT NULL
      AND (got IS NULL
           OR NOT CASE cr.op WHEN '>=' THEN got >= bound WHEN '>' THEN got > bound
                             WHEN '<=' THEN got <= bound WHEN '<' THEN got < bound
                             ELSE got = bound END)
    UNION ALL
    SELECT seq, ts, action, ref, env, actor, policy_seq, 'signers',
           'only ' || array_to_string(actors, ', ') || ' may sign this; ' || actor || ' may not'
    FROM signed WHERE actors IS NOT NULL AND NOT list_contains(actors, actor)
    UNION ALL
    SELECT seq, ts, action, ref, env, actor, policy_seq, 'signers',
           'only keys ' || array_to_string(keys, ', ') || ' may sign this; ' || key_id
           || ' may not'
    FROM signed WHERE keys IS NOT NULL AND NOT list_contains(keys, key_id)
    UNION ALL
    SELECT s.seq, s.ts, s.action, s.ref, s.env, s.actor, s.policy_seq, 'signers',
           'the key lacks the roles ' || array_to_string(s.roles, ', ')
    FROM signed s LEFT JOIN keys k USING (key_id)
    WHERE s.roles IS NOT NULL AND NOT list_has_all(coalesce(k.roles, []), s.roles)
    UNION ALL
    SELECT e.seq, e.ts, e.action, e.ref, e.env, e.actor, e.policy_seq, 'break_glass',
           'cites seq ' || c.g || ', not an unused break-glass grant for it'
    FROM citations c ANTI JOIN valid v ON v.seq = c.seq AND v.g = c.g
    JOIN citing e ON e.seq = c.seq
    UNION ALL
    SELECT seq, ts, action, ref, env, actor, policy_seq, 'break_glass',
           'payload break_glass is not a list of grant seqs'
    FROM citing
    WHERE TRY_CAST(cited AS BIGINT[]) IS NULL)
SELECT f.seq, f.ts, f.action, f.ref, f.env, f.actor, f.policy_seq, f.rule, f.detail,
       (SELECT min(v.g) FROM valid v WHERE v.seq = f.seq AND v.rule = f.rule) AS covered_by
FROM found f
WHERE ($rule IS NULL OR f.rule = $rule)
  AND ($open = 0 OR covered_by IS NULL)
ORDER BY f.seq, f.rule, f.detail;
