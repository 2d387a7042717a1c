"""``python -m aekit`` = the ``aekit`` command."""

from .cli import main

raise SystemExit(main())
