"""``python -m benchmark.perf --quick``: the harness runs and writes every number it promises (not how fast they are)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_quick_perf_writes_every_number(tmp_path):
    out = tmp_path / "perf.json"
    done = subprocess.run([sys.executable, "-m", "benchmark.perf", "--quick", "--output", str(out)], cwd=REPO, capture_output=True, text=True,
                          timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(out.read_text())
    (method,) = result["methods"]
    assert method["method"] == "csi" and method["backbone"] == "unet2d"
    for key in ("suite_samples_per_s", "bare_samples_per_s", "loader_samples_per_s", "consumption_samples_per_s"):
        assert method[key] > 0, key
    assert method["ratio"] == method["suite_samples_per_s"] / method["bare_samples_per_s"]
    assert method["loader_headroom"] == method["loader_samples_per_s"] / method["consumption_samples_per_s"]
    run = result["default_command"]
    assert {"data_check", "data_preparation", "planning", "ray_start", "jobs", "report"} <= set(run["driver_phases_s"])
    assert {"finetune", "validation", "test"} <= set(run["job_stages_s"]) and 0.0 <= run["non_training_share"] <= 1.0
    assert [s["n_cases"] for s in result["scaling"]] == [8, 16]
    assert all(s["wall_s"] > 0 and s["peak_rss_mb"] >= s["peak_anon_mb"] > 0 for s in result["scaling"])
    assert "suite/s" in done.stdout and "non-training share" in done.stdout
