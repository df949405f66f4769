"""Signals for operators: Prometheus metrics kept in Redis (``metrics``) and opt-in
OpenTelemetry traces (``tracing``)."""
