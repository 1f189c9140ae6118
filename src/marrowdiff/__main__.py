from marrowdiff.cli import main

raise SystemExit(main())
