"""The adapters: DynamoDB (mailbox store and request budget), SQS (work queue), Mailivery's
API, Secrets Manager, and the botocore clients they share. They never import a service."""
