"""Training data: reading text sources, tokenizing them into shards, and sampling batches."""
