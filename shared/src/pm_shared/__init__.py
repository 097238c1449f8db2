"""PM's shared library: contracts, the Redis Streams runtime, database helpers and the pm CLI."""
