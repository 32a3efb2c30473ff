"""Per-job engines: a warm pool hands each job its own engine, leases, and a reaper."""
