"""``python -m taskflow_server.testing.openrouter``: run the fake OpenRouter (see ``--help``)."""

from taskflow_server.testing.openrouter.app import main

if __name__ == "__main__":
    main()
