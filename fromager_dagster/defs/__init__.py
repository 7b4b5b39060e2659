"""The Dagster layer: discovery job, graph-backed wheel assets, checks, executor, automation."""
