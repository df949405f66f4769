"""Test doubles shipped with the server, for tests, demos and benchmarks.

:mod:`taskflow_server.testing.openrouter` is a fake OpenRouter: a real HTTP server that speaks
the API's contract (``taskflow fake-openrouter`` runs it). Nothing in the server imports this
package; it is shipped so that users can test their own tasks against the same fake.
"""
