from pyoci.cli import main

raise SystemExit(main())
