"""The engine: index, resolver, sources, build environments, hooks, graph. Never imports dagster."""
