"""Task types: the registry, the two real tasks and the demo tasks."""
