"""CLI command groups: each module defines ``add_commands(subparsers)`` and an ``ORDER`` for the help list."""
