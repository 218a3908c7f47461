import sys

from v2pe.cli import main

sys.exit(main())
