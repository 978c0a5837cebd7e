"""`pile build`: its typed config, the plan derived from the stages, state records and the runner."""
