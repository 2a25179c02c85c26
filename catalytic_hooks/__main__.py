import sys

from catalytic_hooks.cli import main

sys.exit(main())
