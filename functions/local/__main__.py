from functions.local.host import main

raise SystemExit(main())
