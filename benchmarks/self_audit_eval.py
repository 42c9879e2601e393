"""The leakage self-audit (``fedleak.detection.self_audit``) at first contact: every applicable manipulation of
``fedleak.attacks.MALICIOUS`` (the settings of ``fedleak detect-eval``) and the benign models of a FedAvg run.

For each model and partition (IID, Dirichlet(0.1)) a FedAvg run of ``--rounds`` rounds; before each round every
client audits the model it receives on ``--samples`` of its own samples (benign client-rounds: round 1 is the
untrained model, later rounds trained ones); before round 1 and the last round every manipulation is applied to
the global model and audited by every client. The audit's cost is reported relative to one local epoch of the same client on the same model.
Prints one line per cell and the summary as JSON.

    PYTHONPATH=src python benchmarks/self_audit_eval.py --models fcnn text_transformer --rounds 4 --clients 10
"""
from __future__ import annotations

import argparse
import copy
import json
import time
from collections import defaultdict

from fedleak.detection.self_audit import self_audit
from fedleak.attacks.settings import attack_settings
from fedleak.cases.probe import prepare_attack
from fedleak.data.tokens import image_tokens
from fedleak.data import load_dataset
from fedleak.fl import FederationSpec, FLConfig, build_federation

MODEL_OPTIONS = {"cnn": {"padding": 2}}


def audit_client(model, client, samples: int) -> dict:
    train = client.data.train
    n = min(samples, len(train))
    verdict = self_audit(model, batches=[(train.inputs(slice(0, n)), train.y[:n])], batch_size=n)
    return {"flagged": verdict.flagged, "score": verdict.score, "layer": verdict.layer, "seconds": verdict.seconds}


def run(model_name: str, partition: str, args) -> list[dict]:
    size = (32, 32) if model_name == "cnn" else (16, 16)
    splits = [load_dataset("bundled", split=s, size=size) for s in ("train", "test")]
    if model_name == "text_transformer":
        splits = [image_tokens(s) for s in splits]
    train, test = splits
    spec = FederationSpec(dataset="bundled", model=model_name, size=size, partition=partition, alpha=0.1,
                          model_options=MODEL_OPTIONS.get(model_name, {}))
    fl = FLConfig(num_clients=args.clients, rounds=args.rounds, batch_size=32, lr=2e-3, seed=args.seed)
    server = build_federation(spec, fl, datasets=(train, test), progress=False)
    public = test.inputs(slice(0, 256))
    rows = []

    def before_round(r: int, server) -> None:
        for client in server.clients:
            start = time.perf_counter()
            client.fit(copy.deepcopy(server.model))  # one local epoch, the yardstick of the audit's cost
            rows.append({"model": model_name, "partition": partition, "round": r, "kind": "benign",
                         "epoch_seconds": time.perf_counter() - start,
                         **audit_client(server.model, client, args.samples)})
        if r not in (1, args.rounds):
            return
        for s in attack_settings(server.model, train.info, public, 32):
            manipulated = prepare_attack(s.attack, server.model, s.context(train.info, public), **s.options).sent
            if manipulated is None:
                continue
            for client in server.clients[:args.attack_clients]:
                rows.append({"model": model_name, "partition": partition, "round": r, "kind": "malicious",
                             "attack": f"{s.attack} {s.setting}", **audit_client(manipulated, client, args.samples)})

    start = time.perf_counter()
    server.run(lambda record: None, before_round=before_round)
    print(f"# {model_name} {partition}: {time.perf_counter() - start:.0f}s", flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["fcnn", "text_transformer"])
    parser.add_argument("--partitions", nargs="+", default=["iid", "dirichlet"])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--attack-clients", type=int, default=3)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = [row for m in args.models for p in args.partitions for row in run(m, p, args)]
    cells = defaultdict(list)
    for row in rows:
        key = (row["model"], row["kind"], row.get("attack", "benign"), "round1" if row["round"] == 1 else "trained")
        cells[key].append(row)
    summary = {}
    for key, group in sorted(cells.items()):
        scores = [r["score"] for r in group]
        summary[" | ".join(key)] = {"n": len(group), "flagged": sum(r["flagged"] for r in group),
                                    "score_min": min(scores), "score_max": max(scores),
                                    "seconds_mean": sum(r["seconds"] for r in group) / len(group)}
        if key[1] == "benign":
            summary[" | ".join(key)]["cost_vs_epoch"] = (sum(r["seconds"] for r in group)
                                                        / sum(r["epoch_seconds"] for r in group))
        print(f"{' | '.join(key):70s} flagged {summary[' | '.join(key)]['flagged']}/{len(group)}  "
              f"score {min(scores):.3f}-{max(scores):.3f}  audit {summary[' | '.join(key)]['seconds_mean']:.2f}s"
              + (f" = {summary[' | '.join(key)]['cost_vs_epoch']:.2f} local epochs" if key[1] == "benign" else ""),
              flush=True)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
