import sys

from avdd.cli import main

sys.exit(main())
