"""Saliency maps: cnnlab's ``saliency_maps`` against Captum's ``Saliency`` in the same run.

Both compute |∂ s_y / ∂x| of the raw logit; Captum's attribution is reduced with the course's max
over channels. Reports the largest absolute difference of the maps (must be ≤ 1e-6) and the time
ratio cnnlab / Captum (median of interleaved repeats, of wall time and of this process's CPU time, the
steadier of the two on a shared machine; target ≤ 1.1).

Models (random weights: values and speed do not depend on training): SqueezeNet 1.1 at 224×224
(in-place ReLUs) and cnnlab's digit CNN at 28×28.

Runs at a fixed torch thread count (``--threads``, default 1).

Usage: python benchmarks/bench_explain_saliency.py [--repeats 9] [--batch 8] [--threads 1]
Needs the optional peers: pip install 'cnnlab[bench]'
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _time(fn) -> tuple[float, float, torch.Tensor]:
    """(wall s, this process's CPU s, output) of one call."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=9)
    ap.add_argument("--batch", type=int, default=8, help="ImageNet-size batch")
    ap.add_argument("--threads", type=int, default=1, help="torch threads for both (default 1)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    import os
    from importlib.metadata import version

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
            *a, m_ours = _time(ours)
            *b, m_cap = _time(captum)
            t_ours.append(a)
            t_cap.append(b)
        diff = float((m_ours - m_cap.detach()).abs().max())
        med = [statistics.median(v[i] for v in ts) for ts in (t_ours, t_cap) for i in (0, 1)]
        rows.append((arch, n, diff, *med))
    load = " ".join(f"{v:.2f}" for v in os.getloadavg())
    print(f"median of {args.repeats}; torch {torch.__version__}, captum {version('captum')}, "
          f"{torch.get_num_threads()} thread(s), load average {load} on {os.cpu_count()} CPUs")
    print(f"{'':>20} {'':>9} {'---------- wall ----------':>26} {'---------- cpu -----------':>26}")
    print(f"{'model':>14} {'batch':>5} {'max |Δ|':>9} {'cnnlab s':>9} {'captum s':>9} {'ratio':>6} "
          f"{'cnnlab s':>9} {'captum s':>9} {'ratio':>6}")
    for arch, n, diff, wa, ca, wb, cb in rows:
        print(f"{arch:>14} {n:>5} {diff:>9.1e} {wa:>9.4f} {wb:>9.4f} {wa / wb:>6.2f} {ca:>9.4f} {cb:>9.4f} {ca / cb:>6.2f}")
    ok = all(r[2] <= 1e-6 for r in rows)
    print(f"values equal to 1e-6: {'yes' if ok else 'NO'}; time ratio target ≤ 1.1 (wall: "
          f"{'yes' if all(r[3] <= 1.1 * r[5] for r in rows) else 'NO'}, cpu: "
          f"{'yes' if all(r[4] <= 1.1 * r[6] for r in rows) else 'NO'})")


if __name__ == "__main__":
    main()
