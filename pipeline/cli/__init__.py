"""Command-line interface: `pile <command>`; see `pipeline.cli.main`."""
