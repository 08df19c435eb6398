"""``python -m agent`` is the same as the ``bavard`` command."""

from agent.cli.main import main

raise SystemExit(main())
