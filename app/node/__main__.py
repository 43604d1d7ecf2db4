import sys

from app.node.main import main

sys.exit(main())
