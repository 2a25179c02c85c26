import sys

from catalytic_hooks.cli.main import main

sys.exit(main())
