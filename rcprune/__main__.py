import sys

from rcprune.cli import main

sys.exit(main())
