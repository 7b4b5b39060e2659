"""fromager-dagster: rebuild Python dependency trees from source on Dagster."""
