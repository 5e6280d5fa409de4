"""Peak memory of a paper-profile dry run (driver and Ray workers together) as the number of BraTS subjects grows.

    python scripts/measure_dry_run_memory.py [--subjects 8,24] [--folder /tmp/dry-run-memory]

For each count, writes a BraTS-layout folder at the real 240 x 240 x 155 grid (the built-in generator, NIfTI as the
challenge ships it), then runs ``run_benchmark.py --methods scratch --tasks brats --data-root DIR --profile paper
--max-steps 2 --fractions 100%`` from an empty cache, sampling every process of the run (the driver and everything it
started: the Ray head, raylet, workers, preparation processes) every 0.5 s. Printed per count: wall time and the peak
over time of the processes' summed PSS (proportional set size: a shared page, such as the page cache of the
memory-mapped prepared arrays, counted once across processes), of its anonymous part (memory nothing else can
reclaim), and of the summed RSS (shared pages counted in every process: an over-count).
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tasks import get_task  # noqa: E402


def _descendants(pid: int) -> list[int]:
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def _memory_kb(pids: list[int]) -> dict[str, int]:
    total = {"Pss": 0, "Pss_Anon": 0, "Rss": 0}
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                key, _, value = line.partition(":")
                if key in total:
                    total[key] += int(value.split()[0])
        except OSError:
            continue
    return total


def measure(n: int, folder: Path) -> dict:
    data = folder / f"brats-{n}"
    if not data.exists():
        get_task("brats").write_synthetic(data, n_cases=n, shape=(240, 240, 155), seed=0)
    command = [sys.executable, str(REPO / "run_benchmark.py"), "--methods", "scratch", "--tasks", "brats", "--data-root", str(data),
               "--profile", "paper", "--max-steps", "2", "--fractions", "100%", "--output", str(folder / f"run-{n}"),
               "--cache-dir", str(folder / f"cache-{n}"), "--run-name", f"dry-{n}", "--no-dashboard"]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=REPO, stdout=open(folder / f"run-{n}.log", "w"), stderr=subprocess.STDOUT)
    peaks = {"Pss": 0, "Pss_Anon": 0, "Rss": 0}
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            now = _memory_kb(_descendants(process.pid))
            for key in peaks:
                peaks[key] = max(peaks[key], now[key])
            stop.wait(0.5)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    code = process.wait()
    stop.set()
    sampler.join()
    return {"subjects": n, "exit_code": code, "wall_s": time.perf_counter() - start, "peak_pss_mb": peaks["Pss"] / 1024,
            "peak_pss_anon_mb": peaks["Pss_Anon"] / 1024, "peak_rss_sum_mb": peaks["Rss"] / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", default="8,24")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/dry-run-memory"))
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for n in args.subjects.split(","):
        rows.append(measure(int(n), args.folder))
        print(json.dumps(rows[-1]), flush=True)
    if len(rows) > 1:
        first, last = rows[0], rows[-1]
        print(f"peak PSS {first['peak_pss_mb']:.0f} -> {last['peak_pss_mb']:.0f} MB ({last['peak_pss_mb'] / first['peak_pss_mb'] - 1:+.0%}), "
              f"anonymous {first['peak_pss_anon_mb']:.0f} -> {last['peak_pss_anon_mb']:.0f} MB "
              f"({last['peak_pss_anon_mb'] / first['peak_pss_anon_mb'] - 1:+.0%}) from {first['subjects']} to {last['subjects']} subjects")
    return 0 if all(r["exit_code"] == 0 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
