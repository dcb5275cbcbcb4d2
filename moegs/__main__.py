import sys

from moegs.cli import main

sys.exit(main())
