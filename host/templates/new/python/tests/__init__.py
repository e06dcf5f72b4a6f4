# The project's tests: `python3 -m unittest` finds them here.
