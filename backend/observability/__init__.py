"""What an operator sees: Prometheus metrics (``metrics``) and structured logs (``logs``).

Low in the layers: sync/, jobs/, hooks/ and net/ record into it; it imports nothing of ours but config.
"""
