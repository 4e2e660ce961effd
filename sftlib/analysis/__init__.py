"""Analysis of results: stability metrics, result tables, statistics, report, figures."""
