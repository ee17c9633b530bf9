"""The command groups; each module registers its commands with `register(groups, options)`."""
