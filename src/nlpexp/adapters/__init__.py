"""The one place per library where nlpexp uses a private API (a name with a leading underscore); each adapter's
test (tests/test_adapters*.py) exercises every call, so that an upstream change fails there first."""
