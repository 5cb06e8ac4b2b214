"""Session setup shared by tests/ and the doctests of src/."""

import os

# Keras fixes its backend at first import and defaults to TensorFlow, which lrtune does not
# depend on; the test suite runs Keras on torch (tests/integrations adds a JAX subprocess).
os.environ.setdefault("KERAS_BACKEND", "torch")
