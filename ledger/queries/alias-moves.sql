-- name: alias-moves
-- Every move of a model's aliases (champion, challenger …): which version each alias was
-- pointed at, from which version, by whom, and until when; deletions too.
-- param: model text optional: Only this model (default: every model).
-- param: alias text optional: Only this alias.
SELECT seq, ts, model, alias, action, version, previous_version, actor, until, comment
FROM alias_log
WHERE ($model IS NULL OR model = $model) AND ($alias IS NULL OR alias = $alias)
ORDER BY seq;
