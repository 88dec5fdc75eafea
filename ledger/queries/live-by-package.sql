-- name: live-by-package
-- Every version live in an environment whose declared environment (register
-- --requirements / --conda) names a package in a version range, e.g. a release with a
-- known vulnerability. match = pinned: the spec pins one version in the range (==V,
-- ===V; conda =V or ==V, a conda fuzzy =1.26 read as 1.26); match = allowed: it pins
-- none but does not rule the range out (no specifier, or bounds that overlap it).
-- Versions compare by their release numbers (1.26 = 1.26.0 < 1.26.1 < 2); epochs,
-- pre-, post-, dev- and local parts are ignored (2.0rc1 counts as 2.0).
-- param: package text: Package name (compared as PEP 503 normalizes it: numpy, scikit-learn).
-- param: below text optional: Versions lower than this one (e.g. 2).
-- param: at_least text optional: Versions from this one up (e.g. 1.24).
-- param: env text optional: Only this environment (default: every environment).
-- param: pinned int = 0: 1 lists only the versions whose spec pins a version in the range.
WITH
declared AS MATERIALIZED (  -- the package's records in the live versions' registrations
    SELECT l.ref, l.env, l.since, l.deployed_by, p ->> '$.name' AS package,
           p ->> '$.source' AS source, p ->> '$.spec' AS spec, p ->> '$.marker' AS marker
    FROM live_deploys l
    JOIN registrations r ON r.model = l.model AND r.version = l.version,
         unnest(coalesce(TRY_CAST(r.payload -> '$.environment.packages' AS JSON[]), [])) AS t(p)
    WHERE ($env IS NULL OR l.env = $env)
      -- (canonical JSON spells the member literally: a text test before any parsing)
      AND contains(r.payload, '"environment":')
      AND lower(regexp_replace(p ->> '$.name', '[-_.]+', '-', 'g'))
          = lower(regexp_replace($package, '[-_.]+', '-', 'g'))),
bounds AS (  -- the range asked about, as release-number lists (NULL: unbounded)
    SELECT CASE WHEN $below IS NOT NULL THEN list_transform(string_split(regexp_replace(
               regexp_extract($below, '^(?:[0-9]+!)?([0-9]+(?:\.[0-9]+)*)', 1),
               '(\.0+)+$', ''), '.'), lambda x: TRY_CAST(x AS BIGINT)) END AS below,
           CASE WHEN $at_least IS NOT NULL THEN list_transform(string_split(regexp_replace(
               regexp_extract($at_least, '^(?:[0-9]+!)?([0-9]+(?:\.[0-9]+)*)', 1),
               '(\.0+)+$', ''), '.'), lambda x: TRY_CAST(x AS BIGINT)) END AS at_least),
clauses AS (  -- each clause of each spec: its operator and the release numbers of its version
    SELECT d.ref, d.env, d.package, d.spec,
           regexp_extract(c.clause, '^(===|==|~=|!=|<=|>=|<|>|=)?', 1) AS op,
           list_transform(string_split(regexp_replace(
               regexp_extract(c.clause, '^[=<>!~]*(?:[0-9]+!)?([0-9]+(?:\.[0-9]+)*)', 1),
               '(\.0+)+$', ''), '.'), lambda x: TRY_CAST(x AS BIGINT)) AS key,
           c.clause LIKE '%*%' AS wildcard
    FROM declared d, unnest(string_split(d.spec, ',')) AS c(clause)
    WHERE d.spec <> '' AND NOT contains(d.spec, '|')),
judged AS (
    SELECT d.*,
           CASE WHEN NOT contains(d.spec, ',') AND NOT contains(d.spec, '*')
                THEN nullif(regexp_extract(d.spec, '^(?:===?|=)([0-9][^,|<>=!~]*)$', 1), '')
           END AS pinned_version,
           -- a clause that rules the range out: every version it allows is >= below, or
           -- every one is < at_least (unknown operators rule nothing out)
           EXISTS (
               SELECT 1 FROM clauses c, bounds b
               WHERE c.ref = d.ref AND c.env = d.env AND c.package = d.package
                 AND c.spec = d.spec AND c.key <> [NULL]::BIGINT[] AND (
                     (b.below IS NOT NULL AND c.key >= b.below
                      AND (c.op IN ('>=', '>', '~=') OR (c.op IN ('==', '=', '') AND c.wildcard)))
                  OR (b.at_least IS NOT NULL AND c.op = '<' AND c.key <= b.at_least)
                  OR (b.at_least IS NOT NULL AND c.op = '<=' AND c.key < b.at_least)))
               AS ruled_out
    FROM declared d),
pins AS (
    SELECT j.*, list_transform(string_split(regexp_replace(
               regexp_extract(j.pinned_version, '^(?:[0-9]+!)?([0-9]+(?:\.[0-9]+)*)', 1),
               '(\.0+)+$', ''), '.'), lambda x: TRY_CAST(x AS BIGINT)) AS pin_key
    FROM judged j)
SELECT p.ref, p.env, p.since, p.deployed_by, p.package, p.source, p.spec, p.marker,
       p.pinned_version AS pinned, CASE WHEN p.pinned_version IS NULL THEN 'allowed'
                                        ELSE 'pinned' END AS match
FROM pins p, bounds b
WHERE CASE WHEN p.pinned_version IS NOT NULL
           THEN (b.below IS NULL OR p.pin_key < b.below)
                AND (b.at_least IS NULL OR p.pin_key >= b.at_least)
           ELSE $pinned = 0 AND NOT p.ruled_out END
ORDER BY p.env, p.ref, p.package, p.source, p.spec;
