"""python -m gateway → cli.main()."""

from gateway.cli import main

raise SystemExit(main())
