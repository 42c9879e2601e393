"""Time of analytic extraction (Boenisch et al., paper 002, Eq. 5) from a trap-weighted FC-NN gradient.

The paper reports milliseconds for a batch of B = 100 and N = 1000 neurons; this measures that case and a
3000-neuron layer, on the bundled Fashion-MNIST sample. ``eq5_ms`` is Eq. 5 alone (one division over the active
rows), ``extract_ms`` adds the map back to images and the attacker's own individual-input check, ``score_ms`` the
ground-truth matching of §8.1 (not part of the attack). Medians over ``--repeats`` runs after one warm-up.

    python benchmarks/analytic.py [--device cuda] [--repeats 20] [--json]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from fedleak.attacks.analytic import extract_at_layer, extract_linear
from fedleak.attacks.malicious.trap_weights import TrapWeightsConfig, trap_weights
from fedleak.cases.scoring import score
from fedleak.data import load_dataset
from fedleak.fl.training import batch_gradients
from fedleak.models import build_model

CASES = ((100, 1000), (100, 3000))  # (batch size B, neurons N)


def _median_ms(fn, device: torch.device, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(1000 * (time.perf_counter() - start))
    return statistics.median(times)


def bench(batch: int, neurons: int, device: torch.device, repeats: int) -> dict:
    data = load_dataset("bundled")
    x, y = (t.to(device) for t in data[torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:batch]])
    torch.manual_seed(0)
    model = build_model("fcnn", (1, 28, 28), 10, widths=(neurons, 64)).to(device)
    model, secret = trap_weights(model, TrapWeightsConfig((1, 28, 28), scale_factor=0.8))
    update = batch_gradients(model, x, y, only=(f"{secret.layer}.weight", f"{secret.layer}.bias"))
    weight, bias = update[f"{secret.layer}.weight"], update[f"{secret.layer}.bias"]
    reconstruction = extract_at_layer(update, secret)
    scores = score(reconstruction, x)
    return {
        "batch": batch, "neurons": neurons,
        "eq5_ms": round(_median_ms(lambda: extract_linear(weight, bias), device, repeats), 3),
        "extract_ms": round(_median_ms(lambda: extract_at_layer(update, secret), device, repeats), 3),
        "score_ms": round(_median_ms(lambda: score(reconstruction, x), device, repeats), 3),
        "active_rows": len(reconstruction.meta["rows"]), "A": round(scores["A"], 3), "P": round(scores["P"], 3),
        "R": round(scores["R"], 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")
    parser.add_argument("--repeats", type=int, default=20, help="timed repetitions per case (default 20)")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    results = [bench(batch, neurons, device, args.repeats) for batch, neurons in CASES]
    report = {"device": str(device), "torch_threads": torch.get_num_threads(), "cases": results}
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"analytic extraction on {device} ({torch.get_num_threads()} threads), median of {args.repeats}")
    for r in results:
        print(f"  B={r['batch']:4d} N={r['neurons']:5d}: Eq. 5 {r['eq5_ms']:.3f} ms, full extraction "
              f"{r['extract_ms']:.3f} ms, scoring {r['score_ms']:.3f} ms  ({r['active_rows']} active rows, "
              f"A={r['A']:.3f} P={r['P']:.3f} R={r['R']:.3f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
