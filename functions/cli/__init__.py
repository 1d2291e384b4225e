"""`inferq`: the operators' command line (keys, config check, usage, jobs), a thin entry point over shared/."""
