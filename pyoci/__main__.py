from pyoci.entry import main

raise SystemExit(main())
