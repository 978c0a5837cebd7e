"""Source lists, presets and published checksums (installed as the `pipeline.manifests` package)."""
