"""Docker-free local stack for warmgate: moto server, API adapter, poller, schedule and the
Mailivery sandbox (never deployed)."""
