import sys

from pipeline.params.cli import main

sys.exit(main())
