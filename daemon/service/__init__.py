"""The daemon service: watch the inbox, submit every invoice exactly once, write PDF/XML and reports.

Modules, in the order a file meets them: :mod:`~daemon.service.watcher` (readiness),
:mod:`~daemon.service.files` (claim, archive, failed), :mod:`~daemon.service.pipeline` (the order of
steps), :mod:`~daemon.service.ledger` (the durable SQLite ledger), :mod:`~daemon.service.submit`
(exactly-once submission), :mod:`~daemon.service.outbox` (batch folders and reports),
:mod:`~daemon.service.scheduler` (periodic jobs) and :mod:`~daemon.service.runner` (the ``Daemon``).
:mod:`~daemon.service.crash` is the test-only crash hook.
"""
