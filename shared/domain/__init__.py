"""The domain: jobs, config, routing, billing arithmetic, errors and the ports. No I/O here."""
