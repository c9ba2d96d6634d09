from podnet.cli import main

raise SystemExit(main())
