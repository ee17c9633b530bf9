"""WebhookFunction: POST /webhooks/mailivery/{token}."""
