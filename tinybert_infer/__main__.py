import sys

from tinybert_infer.cli.main import main

sys.exit(main())
