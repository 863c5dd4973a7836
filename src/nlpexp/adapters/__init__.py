"""The one place per library where nlpexp uses a private API (a name with a leading underscore; accelerate's state
goes with the transformers Trainer that creates it); each adapter's test (tests/test_adapters*.py) exercises every
call, so that an upstream change fails there first."""
