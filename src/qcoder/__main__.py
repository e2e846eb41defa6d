import sys

from qcoder.cli import main

sys.exit(main())
