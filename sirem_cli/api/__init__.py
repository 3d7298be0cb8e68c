"""Library-level verbs behind the CLI commands (each module: one verb, typed config, result)."""
