from functions.cli.app import main

raise SystemExit(main())
