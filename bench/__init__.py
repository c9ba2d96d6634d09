"""podnet benchmarks: each submodule measures one component side by side with its anchor."""
