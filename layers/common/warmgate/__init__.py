"""warmgate: only a mailbox a real user asked for ever starts warming up in Mailivery."""
