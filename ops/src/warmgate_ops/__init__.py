"""warmgate-ops: see and repair a warmgate deployment without reading its code.

    warmgate-ops mailbox show <email> [--json]
    warmgate-ops mailbox list [--state S ...] [--json]
    warmgate-ops mailbox reindex [--dry-run]
    warmgate-ops campaigns unexpected [--json]
    warmgate-ops campaign redecide <campaign_id> [--dry-run]
    warmgate-ops campaign forget <campaign_id> [--dry-run]
    warmgate-ops dlq peek [--max N] [--json]
    warmgate-ops dlq redrive [--max N] [--dry-run]

(`python -m warmgate_ops` is the same.) Not part of the Lambda layer: it runs on an operator's
machine and reuses warmgate's adapters and services (`warmgate.adapters`, `warmgate.wiring`).

Where it works: `--table`/`--queue-url`/`--dlq-url`, else the Outputs of `--stack <name>`, else
the variables the functions read (MAILBOX_TABLE_NAME, WORK_QUEUE_URL, WORK_DLQ_URL). boto3's
default credentials and region apply; AWS_ENDPOINT_URL points it at the local stack's moto.
Results go to stdout, progress and errors to stderr. Exit codes: see `warmgate_ops.config`.
"""
