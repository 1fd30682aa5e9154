"""groklab.train.memory: freed activations are reused by the next step, not faulted in again."""
import subprocess
import sys
import textwrap

import pytest

# allocate, touch and free a 64 MiB tensor six times; count the minor page faults of the last four
# (the first two touch the heap's two blocks that the allocator alternates between)
PROBE = textwrap.dedent("""
    import resource, sys, torch
    from groklab.train.memory import keep_freed_memory
    if sys.argv[1] == "keep":
        assert keep_freed_memory()
    def cycle():
        t = torch.empty(1 << 24)
        t.fill_(1.0)
        del t
    cycle()
    cycle()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        cycle()
    print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
""")


def faults(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_freed_memory_is_reused_without_page_faults():
    pages = 4 * (1 << 26) // 4096  # four 64 MiB blocks, 4 KiB pages
    assert faults("default") > pages // 2   # glibc maps and unmaps a block this large every time
    assert faults("keep") < pages // 3      # kept in the heap: reused (at most one block faulted again)


def test_the_training_loop_keeps_freed_memory(monkeypatch):
    import groklab
    import groklab.train.loop as loop
    calls = []
    monkeypatch.setattr(loop, "keep_freed_memory", lambda: calls.append(1) or True)
    loop.Trainer.build(groklab.resolve("mlp-adamw", overrides=["task.p=23"]))
    assert calls == [1]
