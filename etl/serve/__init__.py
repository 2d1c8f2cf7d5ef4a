"""``ponte serve``: the webhook receiver (:mod:`etl.serve.receiver`), the worker that turns
stored events into targeted syncs (:mod:`etl.serve.worker`), the status page, /metrics and
/healthz (:mod:`etl.serve.status`), the Starlette app that puts them together
(:mod:`etl.serve.app`) and the ``ponte webhooks`` commands (:mod:`etl.serve.register`).
"""
