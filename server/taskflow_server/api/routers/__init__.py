"""One router per resource: health, tasks, queues, workers, openrouter, events."""
