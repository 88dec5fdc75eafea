"""The SQL views every query reads (DuckDB): what ``ledger sql`` and the named queries in
ledger/queries/*.sql see, built over the typed columns of the events (docs/queries.md).

``{source}`` is the events' relation, ``{as_of_seq}`` and ``{as_of_ts}`` the cut of a
point-in-time read (ledger/query.py fills them in).
"""

from __future__ import annotations

VIEWS = """
CREATE VIEW events AS
SELECT seq, ts, action, model, version, actor, key_id, payload,
       CASE WHEN model IS NOT NULL THEN model || ':' || version END AS ref,
       CASE WHEN action IN ('approve', 'deploy', 'undeploy') THEN payload ->> '$.env'
            WHEN action IN ('alias_set', 'alias_delete') THEN payload ->> '$.alias' END AS env,
       payload ->> '$.comment' AS comment,
       lower(hex(hash)) AS hash
FROM {source};

CREATE VIEW as_of AS SELECT {as_of_seq}::BIGINT AS seq, {as_of_ts}::TIMESTAMPTZ AS ts;

CREATE VIEW registrations AS
SELECT seq, ts, model, version, ref, actor AS registered_by, key_id, payload,
       payload ->> '$.artifact.digest' AS artifact_digest,
       payload ->> '$.artifact.uri' AS artifact_uri,
       payload ->> '$.code.repo' AS code_repo,
       payload ->> '$.code.commit' AS code_commit,
       payload ->> '$.description' AS description,
       coalesce(TRY_CAST(payload -> '$.parents'
                AS STRUCT(model VARCHAR, version BIGINT, relation VARCHAR)[]), []) AS parents,
       coalesce(TRY_CAST(payload -> '$.datasets'
                AS STRUCT(name VARCHAR, uri VARCHAR, digest VARCHAR)[]), []) AS datasets,
       payload -> '$.metrics' AS metrics,
       payload -> '$.tags' AS tags
FROM events WHERE action = 'register';

CREATE VIEW lineage AS
SELECT r.model, r.version, r.ref, p.model AS parent_model, p.version AS parent_version,
       p.model || ':' || p.version AS parent_ref, p.relation
FROM registrations r, unnest(r.parents) AS t(p);

CREATE VIEW datasets AS
SELECT r.model, r.version, r.ref, d.name, d.uri, d.digest
FROM registrations r, unnest(r.datasets) AS t(d);

CREATE VIEW approvals AS
SELECT seq, ts, model, version, ref, env, actor, key_id, comment
FROM events WHERE action = 'approve';

CREATE VIEW deployment_log AS
SELECT seq, ts, action, model, version, ref, env, actor, key_id, comment,
       lag(CASE WHEN action = 'deploy' THEN version END) OVER w AS replaced_version,
       lead(ts) OVER w AS until,
       lead(seq) OVER w AS until_seq,
       lead(CASE WHEN action = 'deploy' THEN version END) OVER w AS replaced_by,
       action = 'deploy' AND lead(seq) OVER w IS NULL AS live,
       coalesce(action = 'deploy' AND version < max(CASE WHEN action = 'deploy' THEN version END)
                OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), false) AS rollback
FROM events WHERE action IN ('deploy', 'undeploy')
WINDOW w AS (PARTITION BY model, env ORDER BY seq);

CREATE VIEW deployments AS
WITH approved AS (
    SELECT d.seq, list(DISTINCT a.actor ORDER BY a.actor) AS approved_by
    FROM deployment_log d JOIN approvals a
      ON a.model = d.model AND a.version = d.version AND a.env = d.env AND a.seq < d.seq
    WHERE d.action = 'deploy'
    GROUP BY d.seq)
SELECT d.*, CASE WHEN d.action = 'deploy' THEN coalesce(approved.approved_by, []) END
       AS approved_by
FROM deployment_log d LEFT JOIN approved USING (seq);

-- Current deployments: the last deploy/undeploy per (model, env) decides what is live.
-- An aggregate, not a window, so that it stays cheap on large ledgers.
CREATE VIEW current_deployments AS
SELECT model, env, max(seq) AS seq, arg_max(action, seq) AS action,
       arg_max(version, seq) AS version,
       max(version) FILTER (WHERE action = 'deploy') AS max_deployed
FROM events WHERE action IN ('deploy', 'undeploy')
GROUP BY model, env;

-- What is live now, without the approvers (cheaper for queries that do not need them).
CREATE VIEW live_deploys AS
SELECT c.model, c.env, c.version, c.model || ':' || c.version AS ref, e.ts AS since,
       e.seq AS deploy_seq, e.actor AS deployed_by, e.payload ->> '$.comment' AS comment,
       c.version < c.max_deployed AS rollback
FROM current_deployments c
JOIN (SELECT seq, ts, actor, payload FROM events WHERE action = 'deploy') e USING (seq)
WHERE c.action = 'deploy';

CREATE VIEW live AS
WITH approved AS (
    -- Join on (model, version) first: the env of an approval is parsed only for the
    -- few approvals of live versions, not for every approval in the ledger.
    SELECT l.deploy_seq, list(DISTINCT a.actor ORDER BY a.actor) AS approved_by
    FROM live_deploys l
    JOIN (SELECT seq, model, version, actor, payload FROM events WHERE action = 'approve') a
      ON a.model = l.model AND a.version = l.version AND a.seq < l.deploy_seq
    WHERE a.payload ->> '$.env' = l.env
    GROUP BY l.deploy_seq)
SELECT l.model, l.env, l.version, l.ref, l.since, l.deploy_seq, l.deployed_by,
       coalesce(approved.approved_by, []) AS approved_by, l.comment, l.rollback
FROM live_deploys l LEFT JOIN approved USING (deploy_seq);

-- Every move of an alias: set (pointing it at a version, from the one before if any) or
-- deleted. ``env`` of an alias event is its alias.
CREATE VIEW alias_log AS
SELECT seq, ts, action, model, env AS alias, version, ref, actor, key_id, comment,
       lag(CASE WHEN action = 'alias_set' THEN version END) OVER w AS previous_version,
       lead(ts) OVER w AS until
FROM events WHERE action IN ('alias_set', 'alias_delete')
WINDOW w AS (PARTITION BY model, env ORDER BY seq);

-- Where each alias points now: its last event, if that set it.
CREATE VIEW aliases AS
SELECT model, alias, version, model || ':' || version AS ref, since, set_seq, set_by
FROM (SELECT model, env AS alias, arg_max(action, seq) AS action, arg_max(version, seq) AS version,
             max(ts) AS since, max(seq) AS set_seq, arg_max(actor, seq) AS set_by
      FROM events WHERE action IN ('alias_set', 'alias_delete') GROUP BY model, env)
WHERE action = 'alias_set';

-- Every tag value a version (or, version NULL, a model) was given or lost, in order:
-- its register's tags, then tag_set and tag_delete (value NULL: deleted).
CREATE VIEW tag_log AS
SELECT r.seq, r.model, r.version, t.key AS tag, t.value ->> '$' AS value
FROM registrations r, json_each(r.tags) t
UNION ALL
SELECT e.seq, e.model, e.version, t.key, t.value ->> '$'
FROM events e, json_each(e.payload -> '$.tags') t WHERE e.action = 'tag_set'
UNION ALL
SELECT e.seq, e.model, e.version, k.tag, NULL
FROM events e, unnest(TRY_CAST(e.payload -> '$.keys' AS VARCHAR[])) AS k(tag)
WHERE e.action = 'tag_delete';

-- The tags each version (and each model, version NULL) has now.
CREATE VIEW tags AS
SELECT model, version, tag, value, seq
FROM (SELECT model, version, tag, arg_max(value, seq) AS value, max(seq) AS seq
      FROM tag_log GROUP BY model, version, tag)
WHERE value IS NOT NULL;

CREATE VIEW model_versions AS
WITH acts AS (
    SELECT model, version,
           min(seq) FILTER (WHERE action = 'reject') AS rejected_seq,
           min(ts) FILTER (WHERE action = 'reject') AS rejected_at,
           min(seq) FILTER (WHERE action = 'deprecate') AS deprecated_seq,
           min(ts) FILTER (WHERE action = 'deprecate') AS deprecated_at,
           count(*) FILTER (WHERE action = 'approve') AS approvals
    FROM events WHERE action IN ('approve', 'reject', 'deprecate')
    GROUP BY model, version),
envs AS (
    SELECT model, version, list(env ORDER BY env) AS approved_for
    FROM (SELECT DISTINCT model, version, env FROM approvals)
    GROUP BY model, version),
lv AS (
    SELECT model, version, list(env ORDER BY env) AS live_in
    FROM current_deployments WHERE action = 'deploy' GROUP BY model, version),
al AS (
    SELECT model, version, list(alias ORDER BY alias) AS aliases
    FROM aliases GROUP BY model, version)
SELECT r.model, r.version, r.ref,
       CASE WHEN acts.deprecated_seq IS NOT NULL THEN 'deprecated'
            WHEN acts.rejected_seq IS NOT NULL THEN 'rejected'
            WHEN acts.approvals > 0 THEN 'approved'
            ELSE 'registered' END AS status,
       coalesce(envs.approved_for, []) AS approved_for,
       coalesce(lv.live_in, []) AS live_in, coalesce(al.aliases, []) AS aliases,
       r.registered_by, r.ts AS registered_at, r.seq AS registered_seq,
       r.artifact_digest, r.code_repo, r.code_commit, r.parents, r.datasets,
       acts.rejected_seq, acts.rejected_at, acts.deprecated_seq, acts.deprecated_at
FROM registrations r
LEFT JOIN acts USING (model, version)
LEFT JOIN envs USING (model, version)
LEFT JOIN lv USING (model, version)
LEFT JOIN al USING (model, version);

CREATE VIEW keys AS
WITH added AS (
    SELECT payload ->> '$.key_id' AS key_id, payload ->> '$.actor' AS actor,
           coalesce(TRY_CAST(payload -> '$.roles' AS VARCHAR[]), []) AS roles,
           seq AS added_seq, ts AS added_at, actor AS added_by
    FROM events WHERE action IN ('genesis', 'key_add')),
revoked AS (
    SELECT payload ->> '$.key_id' AS key_id, seq AS revoked_seq, ts AS revoked_at,
           actor AS revoked_by, payload ->> '$.reason' AS reason
    FROM events WHERE action = 'key_revoke')
SELECT added.*, revoked.revoked_seq, revoked.revoked_at, revoked.revoked_by, revoked.reason,
       revoked.revoked_seq IS NULL AS active
FROM added LEFT JOIN revoked USING (key_id);
"""

#: The views, in the order ``ledger sql`` users are most likely to want them.
VIEW_NAMES = (
    "events",
    "model_versions",
    "deployments",
    "live",
    "aliases",
    "alias_log",
    "tags",
    "tag_log",
    "live_deploys",
    "approvals",
    "keys",
    "registrations",
    "lineage",
    "datasets",
    "deployment_log",
    "current_deployments",
    "as_of",
)
