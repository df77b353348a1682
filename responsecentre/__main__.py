import sys

from responsecentre.cli import main

sys.exit(main())
