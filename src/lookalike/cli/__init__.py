"""The ``lookalike`` command. Each public module here contributes subcommands via ``add_commands``."""
