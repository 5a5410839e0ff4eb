from batchops.cli import main

raise SystemExit(main())
