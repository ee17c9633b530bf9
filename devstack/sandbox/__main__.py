from devstack.sandbox.cli import main

raise SystemExit(main())
