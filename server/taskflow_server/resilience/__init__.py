"""Shared resilience for upstream calls: error classes and retry schedules, the circuit breaker
and the rate limiter. Breaker and limiter keep their state in Redis, so every worker shares them.
"""
