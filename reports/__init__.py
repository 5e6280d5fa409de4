"""Reports computed from the tidy results table (leaderboards; statistics and plots come later)."""
from reports.leaderboard import leaderboard_tables, write_leaderboard  # noqa: F401
