import sys

from tinybert_infer.cli import main

sys.exit(main())
