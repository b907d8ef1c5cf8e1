"""The sweep: its table and config checks, aggregation, claims, plots, the cost estimate."""
