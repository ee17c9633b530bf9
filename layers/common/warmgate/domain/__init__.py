"""The domain: mailbox states and their transitions, the campaign ledger, the decision table,
emails, campaign ids and the webhook envelope. Pure: no I/O, no boto3, no httpx."""
