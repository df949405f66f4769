"""The Redis task store: keys, transition scripts, their wrappers, events and blobs."""
