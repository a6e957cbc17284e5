"""RQ entry points. Jobs are module-level functions that take ids, open the app context
themselves, and never swallow errors (a swallowed error would look like a successful run)."""
