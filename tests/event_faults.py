"""PutEvents failures injected into a real boto3 EventBridge client (moto behind it).

A refused entry behaves as EventBridge's own partial failure: it is not delivered, and the
answer carries an ErrorCode at its position and counts it in FailedEntryCount; the other
entries of the request are delivered. A failed call raises before anything is delivered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from botocore.awsrequest import AWSResponse
from botocore.exceptions import ClientError

Entry = dict[str, Any]


class PutEventsFaults:
    def __init__(self, client: Any) -> None:
        self._refusals: list[tuple[Callable[[Entry], bool], list[int]]] = []
        self._failing_calls = 0
        self.refused: list[Entry] = []
        events = client.meta.events
        events.register("provide-client-params.events.PutEvents", self._drop)
        events.register("before-call.events.PutEvents", self._nothing_left)
        events.register("after-call.events.PutEvents", self._answer)

    def refuse(self, times: int = 1, when: Callable[[Entry], bool] = lambda _: True) -> None:
        """Refuse the next `times` entries for which `when` holds."""
        self._refusals.append((when, [times]))

    def fail_calls(self, times: int = 1) -> None:
        """The next `times` PutEvents calls fail as a whole (throttled)."""
        self._failing_calls += times

    def _drop(self, params: dict[str, Any], context: dict[str, Any], **_: Any) -> dict[str, Any]:
        if self._failing_calls:
            self._failing_calls -= 1
            raise ClientError(
                {"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "PutEvents"
            )
        kept, refused_at = [], []
        for position, entry in enumerate(params["Entries"]):
            if self._take_refusal(entry):
                refused_at.append(position)
                self.refused.append(entry)
            else:
                kept.append(entry)
        context["refused_at"] = refused_at
        context["entries"] = len(params["Entries"])
        return {**params, "Entries": kept}

    def _take_refusal(self, entry: Entry) -> bool:
        for when, left in self._refusals:
            if left[0] > 0 and when(entry):
                left[0] -= 1
                return True
        return False

    def _nothing_left(self, context: dict[str, Any], **_: Any) -> tuple[AWSResponse, Any] | None:
        """Every entry refused: nothing to send, answer here (PutEvents needs one entry)."""
        if context.get("refused_at") and len(context["refused_at"]) == context["entries"]:
            response = AWSResponse("https://events.local", 200, {}, None)
            return response, {"FailedEntryCount": 0, "Entries": []}
        return None

    def _answer(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        refused_at = context.get("refused_at") or []
        if not refused_at:
            return
        delivered = iter(parsed.get("Entries", []))
        parsed["Entries"] = [
            {"ErrorCode": "InternalFailure", "ErrorMessage": "injected by the test"}
            if position in refused_at
            else next(delivered)
            for position in range(context["entries"])
        ]
        parsed["FailedEntryCount"] = parsed.get("FailedEntryCount", 0) + len(refused_at)
