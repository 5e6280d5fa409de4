"""Reports computed from the tidy results tables alone (pure: no torch, no Ray).

``build_report(run_dirs, out_dir=..., title=...)`` writes leaderboard.md / .csv / .tex and a static HTML
site (index with the cross-task ranking, one page per task, plots/) and returns their paths."""
from reports.build import build_report  # noqa: F401
from reports.leaderboard import leaderboard_tables, paired_tables, write_leaderboard  # noqa: F401
