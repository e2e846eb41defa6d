import sys
from pathlib import Path

# tests import the scripted endpoint helper as a plain module
sys.path.insert(0, str(Path(__file__).parent))

# the polyglot fixtures contain exercise tests (some meant to fail): they run only inside the sandbox
collect_ignore_glob = ["fixtures/*"]
