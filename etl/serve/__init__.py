"""``ponte serve``: the long-running process (webhook receiver, worker, status page)."""
