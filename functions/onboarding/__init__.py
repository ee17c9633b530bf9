"""OnboardingFunction: POST/GET/DELETE /mailboxes."""
