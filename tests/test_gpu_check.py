"""benchmarks/gpu_check.py --quick --device cpu: the GPU check script runs end to end on a CPU (small
shapes), prints its table row by row while it works, and every row kind is there."""

import os
import subprocess
import sys
from pathlib import Path

from timer1.util.precision import native_bf16

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_quick_on_cpu_prints_rows_as_it_makes_them():
    process = subprocess.Popen([sys.executable, "benchmarks/gpu_check.py", "--quick", "--device", "cpu"], cwd=REPO,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        first = [process.stdout.readline() for _ in range(4)]   # header, table head, the ceilings row
        still_running = process.poll() is None                   # the rest is not made yet
        rest, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err[-2000:]
    assert first[0].startswith("torch ") and first[3].startswith("| ceilings, measured | copy ") and still_running
    rows = [line for line in rest.splitlines() if line.startswith("| ")]
    expected = [("| parity: cpu ", 1), ("| decode 0.5B (2 layers)", 3), ("| decode 1.5B (2 layers)", 3),
                ("| GRIP update 1.5B (2 layers)", 1), ("| projected 1.5B (2 layers) step", 1), ("| SDPA: ", 4)]
    for kind, count in expected:
        assert sum(row.startswith(kind) for row in rows) == count, (kind, rows)
    # bf16 where this CPU computes it natively, else fp32 (emulated bf16 made this run 16x slower there)
    dtype = "bf16" if native_bf16("cpu") else "fp32"
    assert f"rows in {dtype}" in first[0]
    assert all("of the bandwidth floor" in row and f"{dtype}, eager |" in row for row in rows if row.startswith("| decode"))
    assert "1 call(s) of 192 rows" in next(row for row in rows if row.startswith("| projected"))  # 4 prompts x 48
    assert "of peak" in next(row for row in rows if row.startswith("| GRIP update"))
    assert rest.strip().splitlines()[-1].startswith("done in ")
