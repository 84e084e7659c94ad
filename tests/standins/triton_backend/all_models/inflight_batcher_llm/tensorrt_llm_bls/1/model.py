"""TEST STAND-IN: the python-backend model file Triton expects in the version dir; never run."""
