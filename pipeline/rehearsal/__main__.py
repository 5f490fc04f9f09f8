import sys

from pipeline.rehearsal.run import main

sys.exit(main())
