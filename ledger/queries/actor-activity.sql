-- name: actor-activity
-- Events per actor in a time window [start, end): how many of each action, and
-- the first and last one.
-- param: start timestamp optional: Window start, inclusive (default: the first event).
-- param: end timestamp optional: Window end, exclusive (default: the as-of instant).
-- param: actor text optional: Only this actor.
SELECT actor,
       count(*) AS events,
       count(*) FILTER (WHERE action = 'register') AS registered,
       count(*) FILTER (WHERE action = 'approve') AS approved,
       count(*) FILTER (WHERE action = 'reject') AS rejected,
       count(*) FILTER (WHERE action = 'deploy') AS deployed,
       count(*) FILTER (WHERE action = 'undeploy') AS undeployed,
       count(*) FILTER (WHERE action = 'deprecate') AS deprecated,
       count(*) FILTER (WHERE action IN ('genesis', 'key_add', 'key_revoke')) AS key_events,
       min(ts) AS first, max(ts) AS last
FROM events
WHERE ($start IS NULL OR ts >= $start)
  AND ($end IS NULL OR ts < $end)
  AND ($actor IS NULL OR actor = $actor)
GROUP BY actor
ORDER BY actor;
