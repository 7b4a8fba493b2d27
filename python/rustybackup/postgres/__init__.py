"""PostgreSQL as a backup source: online base backups (basebackup), WAL archiving
(archive), point-in-time restore (recovery), restore tests in a sandbox (sandbox), and
the WAL naming rules they share (wal)."""
