"""Settlement batch jobs (rulebook §6-§8): daily mark-to-market, expiry and delivery assignment,
goodput-adjusted delivery settlement. Each computes deterministically from the journal (and
telemetry files) and posts through the core as commands carrying an idempotency digest."""
