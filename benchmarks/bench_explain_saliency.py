"""Saliency maps: cnnlab's ``saliency_maps`` against Captum's ``Saliency`` in the same run.

Both compute |∂ s_y / ∂x| of the raw logit; Captum's attribution is reduced with the course's max
over channels. Reports the largest absolute difference of the maps (must be ≤ 1e-6) and the time
ratio cnnlab / Captum (median of interleaved repeats; target ≤ 1.1).

Models (random weights: values and speed do not depend on training): SqueezeNet 1.1 at 224×224
(in-place ReLUs) and cnnlab's digit CNN at 28×28.

Usage: python benchmarks/bench_explain_saliency.py [--repeats 5] [--batch 8]
Needs the optional peers: pip install 'cnnlab[bench]'
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _time(fn, repeats: int) -> tuple[float, torch.Tensor]:
    out, times = None, []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch", type=int, default=8, help="ImageNet-size batch")
    args = ap.parse_args()
    from captum.attr import Saliency

    from cnnlab.explain import saliency_maps
    from cnnlab.models import build_model

    torch.manual_seed(0)
    rows = []
    for arch, n in (("squeezenet1_1", args.batch), ("digitnet", 256)):
        bundle = build_model(arch, "NONE")
        size, c = bundle.input_size, bundle.in_channels
        x = torch.randn(n, c, size, size)
        t = torch.randint(0, 10, (n,))
        sal = Saliency(bundle.model)

        def ours():
            return saliency_maps(bundle, x, t, batch_size=n)

        def captum():
            return sal.attribute(x.clone().requires_grad_(True), target=t, abs=True).amax(dim=1)

        ours(), captum()  # warm-up
        t_ours, t_cap = [], []
        for _ in range(args.repeats):  # interleaved, so machine noise hits both
            a, m_ours = _time(ours, 1)
            b, m_cap = _time(captum, 1)
            t_ours.append(a)
            t_cap.append(b)
        diff = float((m_ours - m_cap.detach()).abs().max())
        rows.append((arch, n, diff, statistics.median(t_ours), statistics.median(t_cap)))
    print(f"{'model':>14} {'batch':>5} {'max |Δ|':>9} {'cnnlab s':>9} {'captum s':>9} {'ratio':>6}")
    for arch, n, diff, a, b in rows:
        print(f"{arch:>14} {n:>5} {diff:>9.1e} {a:>9.4f} {b:>9.4f} {a / b:>6.2f}")
    ok = all(r[2] <= 1e-6 for r in rows)
    print(f"values equal to 1e-6: {'yes' if ok else 'NO'}; time ratio target ≤ 1.1")


if __name__ == "__main__":
    main()
