"""Peers: run the same registry workflow on MLflow and GTO (stub until written)."""


def run_peers(run):
    run.missing("peers", "peers", "peer runners not written yet")
