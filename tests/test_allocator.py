"""retain_freed_memory: a training step's freed activations are reused instead of page-faulted in again."""

import subprocess
import sys
import textwrap

import pytest

# Twenty DANN steps (64 + 64 digits, one thread); the median page faults of the last sixteen count.
# A median, not a mean: the heap still grows once in a while (one step of ~3,000 faults among
# zeros), which a 5-step mean turned into a flaky failure on CI.
PROGRAM = textwrap.dedent("""
    import resource, statistics, sys, torch
    from cnnlab.allocator import retain_freed_memory
    applied = retain_freed_memory() if sys.argv[1] == "tuned" else None
    from cnnlab.adapt.dann import dann_losses
    from cnnlab.adapt.networks import DANNNet
    torch.set_num_threads(1)
    torch.manual_seed(0)
    net = DANNNet()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    xs, xt, ys = torch.randn(64, 3, 28, 28), torch.randn(64, 3, 28, 28), torch.randint(0, 10, (64,))
    faults = []
    for i in range(20):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        out = dann_losses(net, xs, ys, xt, 0.5)
        opt.zero_grad()
        (out["class_loss"] + out["domain_loss"]).backward()
        opt.step()
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    print(applied, statistics.median(faults[4:]))
""")


# A 320 MiB activation (VGG16's first ones are 411 MB at batch 32): written, freed and allocated
# again; the page faults of the last four rounds count (the heap settles after a few rounds:
# aligned allocations leave gaps the first ones cannot reuse).
LARGE_BLOCKS = textwrap.dedent("""
    import resource, sys, torch
    from cnnlab.allocator import retain_freed_memory
    applied = retain_freed_memory() if sys.argv[1] == "tuned" else None
    for i in range(12):
        if i == 8:
            before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        x = torch.ones(80 << 20)  # 320 MiB of float32, every page written
        del x
    print(applied, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 4)
""")


def _faults_per_step(mode: str, program: str = PROGRAM) -> tuple[str, float]:
    out = subprocess.run([sys.executable, "-c", program, mode], capture_output=True, text=True, check=True)
    applied, faults = out.stdout.split()
    return applied, float(faults)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_training_steps_reuse_freed_memory():
    _, default = _faults_per_step("default")
    applied, tuned = _faults_per_step("tuned")
    assert applied == "True"
    assert tuned < max(20.0, default / 10), (tuned, default)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_blocks_of_hundreds_of_megabytes_are_reused_too():
    _, default = _faults_per_step("default", LARGE_BLOCKS)
    applied, tuned = _faults_per_step("tuned", LARGE_BLOCKS)
    assert applied == "True"
    assert default > 50_000  # 81,920 pages a block by default: the test measures something
    assert tuned < 100, (tuned, default)


def test_retain_freed_memory_is_idempotent():
    from cnnlab.allocator import retain_freed_memory

    assert retain_freed_memory() == retain_freed_memory()
