"""The task history in PostgreSQL: a recorder that follows the event log, and the queries.

Off unless ``TASKFLOW_DATABASE_URL`` is set. ``db`` owns the pool and the migrations,
``recorder`` the consumer group that writes, ``queries`` the reads the API serves.
"""
