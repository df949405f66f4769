"""Workers: the claim loop, leases, heartbeats, scheduler and reaper, the CPU pool."""
