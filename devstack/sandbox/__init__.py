"""A local stand-in for the Mailivery API: a test and dev tool, never deployed.

It speaks the vendor contract (`mailivery-contract.md`, §1-§4) over real HTTP so the client,
the webhook handler and the worker can be exercised end to end without the vendor, and
it adds a control surface under `/_sandbox` that plays the parts nobody can script against the
real service: the mailbox owner consenting at Microsoft, vendor-side events (pauses, connection
problems) and misbehaviour (faults, lost / duplicated / reordered webhooks, rate limiting).

It deliberately does not import `warmgate`: it stands in for the vendor, so sharing code with the
integration under test would let one bug hide another.

Where the contract says [guess] or [unknown], the sandbox picks one answer and, where the answer
matters to the integration, makes it switchable (`POST /_sandbox/options`) so tests can cover
both. Choices that are the sandbox's own and not the vendor's are marked "Sandbox choice".

Fault semantics (`POST /_sandbox/faults`), chosen to model what a client cannot tell apart:
- ``error``/``html``: the vendor never saw the call; nothing changes.
- ``timeout``: the vendor *did* process the call, only the answer is late (`hang_ms`). This is
  the dangerous case for a non-idempotent create, which is why it is modelled this way.
- ``empty``/``garbage``: the call was processed; only the 200 body is lost or unrecognisable.
- ``lost``: the call was processed at once, then its answer never comes (`hang_ms`, then 504):
  the client's read times out while the effect is already visible to a re-read.
- ``reset``: the connection is reset at once, without an answer, and the call is processed
  `hang_ms` later (a proxy dropped the client while the vendor went on): the client sees a
  broken connection, not a timeout, and the effect shows to a re-read only after a while.

Several rules may be in force at once (`{"rules": [...]}`), each with its own seed and count.
A storm (`POST /_sandbox/storm`) answers every call with 429 and Retry-After for a while, as
the vendor's rate limiter has been seen to: logged with `fault: "storm"`.

One module per concern: `store` (campaigns, consents, connections), `validation`, `rate_limit`,
`faults`, `webhooks` (payloads and their delivery), `options`; `vendor_api` and `control_api`
serve them over HTTP from the one server in `app`; `control` is the client of the control
surface, `cli` the command line.

Run on its own: ``python -m devstack.sandbox --port 8700 --webhook-url http://.../TOKEN``.
"""

from devstack.sandbox.app import MailiverySandbox
from devstack.sandbox.control import SandboxControl, SandboxControlError
from devstack.sandbox.vendor_api import CONSENT_CLIENT_ID

__all__ = ["CONSENT_CLIENT_ID", "MailiverySandbox", "SandboxControl", "SandboxControlError"]
