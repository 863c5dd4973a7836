"""Each library's private API that nlpexp cannot avoid, one module per library, each pinned by a test."""
