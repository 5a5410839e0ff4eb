"""[core] hostname_callable of the shard test's workers: both run on this machine, so each reports the name
the test gave it (BATCHOPS_TEST_WORKER_NAME), as two hosts would report their own."""

import os


def worker_name() -> str:
    return os.environ["BATCHOPS_TEST_WORKER_NAME"]
