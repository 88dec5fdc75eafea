"""The SQL views agree with the write path's rules (ledger.state.State) on random histories.

Hypothesis drives random register / approve / reject / deploy / undeploy / deprecate /
key-revoke operations through the Ledger API; whatever the rules refuse is skipped, as
a user would see it refused. Then, at the end and at random cut-offs (by seq and by
timestamp, with runs of equal timestamps), the state the views rebuild must equal the
State that ``Ledger.state`` replays.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ledger.events as E
from ledger import Draft, Ledger, LedgerError, SigningKey
from ledger.actions import key_payload as _key_payload
from ledger.query import STATUS_MODELS, Session
from ledger.state import State

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z
KEYS = {name: SigningKey.generate() for name in ("admin", "alice", "bob", "dave", "carol")}
ROLES = {"alice": "registrar", "bob": "approver", "dave": "approver", "carol": "deployer"}
MODELS = ("m.a", "m.b", "m.c")
ENVS = ("staging", "production")

step = st.sampled_from([0, 0, 1_000_000, 60_000_000])  # often equal timestamps
# Deploy first: Hypothesis leans towards the first choice, and replacing a live version
# is where the views and the replay are most likely to part.
KINDS = ("deploy", "deploy", "approve", "register", "undeploy", "approve", "register",
         "deploy", "reject", "deprecate", "revoke")  # fmt: skip


def draw_op(data: st.DataObject, registered: list[tuple[str, int]]) -> tuple:
    """An operation, aimed mostly at versions that exist so that it usually applies."""
    kind = data.draw(st.sampled_from(KINDS)) if registered else "register"
    if kind == "revoke":
        return ("revoke", "dave")
    known = st.sampled_from(registered) if registered else st.nothing()
    any_ref = st.tuples(st.sampled_from(MODELS), st.integers(1, 3))
    if kind == "register":
        parent = data.draw(st.none() | known) if registered else None
        return ("register", data.draw(st.sampled_from(MODELS)), parent)
    m, v = data.draw(st.one_of(known, known, known, any_ref))
    if kind == "approve":
        return ("approve", m, v, data.draw(st.sampled_from(ENVS)),
                data.draw(st.sampled_from(["bob", "dave"])))  # fmt: skip
    if kind in ("deploy", "undeploy"):
        return (kind, m, v, data.draw(st.sampled_from(ENVS)))
    return (kind, m, v)


def draft(o: tuple, ts: int) -> tuple[Draft, str]:
    kind = o[0]
    if kind == "register":
        parents = [f"{o[2][0]}:{o[2][1]}=finetune"] if o[2] else []
        return Draft(E.REGISTER, E.register_payload(parents=parents), o[1], ts=ts), "alice"
    if kind == "approve":
        return Draft(E.APPROVE, {"env": o[3]}, o[1], o[2], ts=ts), o[4]
    if kind in ("deploy", "undeploy"):
        return Draft(kind, {"env": o[3]}, o[1], o[2], ts=ts), "carol"
    if kind == "revoke":
        return Draft(E.KEY_REVOKE, {"key_id": KEYS[o[1]].key_id}, ts=ts), "admin"
    signer = "bob" if kind == "reject" else "alice"
    return Draft(kind, {}, o[1], o[2], ts=ts), signer


def state_from_sql(session: Session) -> dict:
    mv = session.run(
        "SELECT model, version, status, approved_for, live_in, registered_by, registered_seq,"
        " rejected_seq, deprecated_seq FROM model_versions"
    ).to_pylist()
    live = session.run("SELECT model, env, version, deploy_seq FROM live").to_pylist()
    keys = session.run("SELECT key_id, actor, roles, added_seq, revoked_seq FROM keys")
    approvals = session.run("SELECT model, version, env, actor, seq FROM approvals")
    status = session.run(STATUS_MODELS, {"model": None}).to_pylist()
    return {
        "models": [tuple(r.values()) for r in status],
        "versions": {
            (r["model"], r["version"]): (
                r["status"],
                r["approved_for"],
                r["live_in"],
                r["registered_by"],
                r["registered_seq"],
                r["rejected_seq"],
                r["deprecated_seq"],
            )
            for r in mv
        },
        "live": {(r["model"], r["env"]): (r["version"], r["deploy_seq"]) for r in live},
        "keys": {
            r["key_id"]: (r["actor"], sorted(r["roles"]), r["added_seq"], r["revoked_seq"])
            for r in keys.to_pylist()
        },
        "approvals": sorted(
            (r["model"], r["version"], r["env"], r["actor"], r["seq"])
            for r in approvals.to_pylist()
        ),
    }


def state_from_python(s: State) -> dict:
    def live(m: str) -> str:
        return " ".join(f"{e}={n}" for (mm, e), n in sorted(s.live.items()) if mm == m)

    return {
        "models": [
            (m, n, n, s.versions[(m, n)].status, live(m)) for m, n in sorted(s.latest.items())
        ],
        "versions": {
            k: (
                v.status,
                sorted(v.approvals),
                sorted(v.live),
                v.registrant,
                v.registered_seq,
                v.rejected_seq,
                v.deprecated_seq,
            )
            for k, v in s.versions.items()
        },
        "live": {(m, e): (n, s.versions[(m, n)].live[e]) for (m, e), n in s.live.items()},
        "keys": {
            k.key_id: (k.actor, sorted(k.roles), k.added_seq, k.revoked_seq)
            for k in s.keys.values()
        },
        "approvals": sorted(
            (v.model, v.version, env, a.actor, a.seq)
            for v in s.versions.values()
            for env, approvals in v.approvals.items()
            for a in approvals
        ),
    }


@settings(
    max_examples=10,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data(), n=st.integers(8, 30), cuts=st.tuples(st.floats(0, 1), st.floats(0, 1)))
def test_sql_state_equals_state_replay(data: st.DataObject, n: int, cuts: tuple) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        led = Ledger.init(Path(tmp) / "reg", KEYS["admin"], "admin", ts=T0)
        ts = T0
        for name, role in ROLES.items():
            payload = _key_payload(KEYS[name].public_key, name, [role])
            led.append(Draft(E.KEY_ADD, payload, ts=ts), KEYS["admin"])
        applied = 0
        registered: list[tuple[str, int]] = []
        for _ in range(n):
            o = draw_op(data, registered)
            ts += data.draw(step)
            d, signer = draft(o, ts)
            try:
                r = led.append(d, KEYS[signer])
                applied += 1
            except LedgerError:
                continue  # refused by the rules: skipped, nothing written
            if r.action == E.REGISTER:
                registered.append((r.model, r.version))
        events = led.events(columns=["seq", "ts"])
        seqs = events["seq"].to_pylist()
        times = [t.timestamp() for t in events["ts"].to_pylist()]
        last = seqs[-1]
        assert last == len(ROLES) + applied

        # The whole ledger, then as of random seqs.
        for at in (None, int(cuts[0] * last)):
            session = Session(led.store, at_seq=at)
            try:
                assert state_from_sql(session) == state_from_python(led.state(at_seq=at))
            finally:
                session.close()

        # As of a timestamp: every event with ts <= T, however many share T.
        i = int(cuts[1] * last)
        t_us = T0 + round((times[i] - times[0]) * 1_000_000)
        upto = max(s for s, t in zip(seqs, times, strict=True) if t <= times[i])
        session = Session(led.store, as_of=t_us)
        try:
            assert session.cutoff.seq == upto
            assert state_from_sql(session) == state_from_python(led.state(at_seq=upto))
        finally:
            session.close()
