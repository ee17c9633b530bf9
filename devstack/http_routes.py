"""The template's `HttpApi` routes as API Gateway matches them: Path and Method of each
`HttpApi` event, per-route Auth over the API's DefaultAuthorizer, most specific route first."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["HttpRoute", "RouteError", "match_route", "routes_from_template"]


class RouteError(ValueError):
    """A route in the template the local API cannot serve; the message names event and property."""


@dataclass(frozen=True)
class HttpRoute:
    """One `HttpApi` event: `POST /mailboxes` → OnboardingFunction, with its authorization."""

    function_id: str
    event_id: str
    method: str  # upper case, or ANY
    path: str  # as in the template: /mailboxes/{email}, /files/{proxy+}, or $default
    authorization: str  # AWS_IAM or NONE
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_pattern", _path_pattern(self.path))

    @property
    def route_key(self) -> str:
        return "$default" if self.path == "$default" else f"{self.method} {self.path}"

    def path_parameters(self, path: str) -> dict[str, str] | None:
        """The {params} of `path` if this route's path matches it, else None."""
        match = self._pattern.fullmatch(path)
        return None if match is None else dict(match.groupdict())

    def priority(self) -> tuple[int, int, int, int]:
        """API Gateway prefers literal segments over {params}, {params} over {greedy+}, and an
        explicit method over ANY; lower sorts first."""
        segments = [s for s in self.path.split("/") if s]
        greedy = sum(s.endswith("+}") for s in segments)
        literal = sum(not s.startswith("{") for s in segments)
        return (
            int(self.path == "$default"),
            greedy,
            -literal,
            int(self.method == "ANY"),
        )


def _path_pattern(path: str) -> re.Pattern[str]:
    if path == "$default":
        return re.compile(r".*")
    parts = []
    for segment in path.split("/"):
        if match := re.fullmatch(r"\{([A-Za-z0-9_]+)(\+?)\}", segment):
            name, greedy = match.groups()
            parts.append(f"(?P<{name}>.+)" if greedy else f"(?P<{name}>[^/]+)")
        else:
            parts.append(re.escape(segment))
    return re.compile("/".join(parts))


def routes_from_template(template: Mapping[str, Any]) -> list[HttpRoute]:
    """Every `HttpApi` event of every AWS::Serverless::Function, most specific first."""
    resources: Mapping[str, Any] = template.get("Resources") or {}
    routes = []
    for function_id, definition in resources.items():
        if definition.get("Type") != "AWS::Serverless::Function":
            continue
        events = (definition.get("Properties") or {}).get("Events") or {}
        for event_id, event in events.items():
            if event.get("Type") != "HttpApi":
                continue
            where = f"{function_id}.Events.{event_id}"
            props = event.get("Properties") or {}
            path = props.get("Path", "$default")
            method = str(props.get("Method", "ANY")).upper()
            if not isinstance(path, str) or not (path.startswith("/") or path == "$default"):
                raise RouteError(f"{where}.Properties.Path: {path!r} is not a literal path")
            if method == "X-AMAZON-APIGATEWAY-ANY-METHOD":
                method = "ANY"
            authorization = _authorization(resources, props, where)
            routes.append(HttpRoute(function_id, event_id, method, path, authorization))
    return sorted(routes, key=HttpRoute.priority)


def _authorization(resources: Mapping[str, Any], props: Mapping[str, Any], where: str) -> str:
    """The route's authorizer: its own Auth.Authorizer, else its API's DefaultAuthorizer."""
    explicit = (props.get("Auth") or {}).get("Authorizer")
    default = None
    api = props.get("ApiId")
    if api is not None:
        match api:
            case {"Ref": str() as api_id} if api_id in resources:
                api_auth = (resources[api_id].get("Properties") or {}).get("Auth") or {}
                default = api_auth.get("DefaultAuthorizer")
            case _:
                raise RouteError(f"{where}.Properties.ApiId: only !Ref <HttpApi> is understood")
    authorizer = explicit or default or "NONE"
    if authorizer not in ("AWS_IAM", "NONE"):
        raise RouteError(
            f"{where}: authorizer {authorizer!r} is not emulated locally (AWS_IAM and NONE are)"
        )
    return str(authorizer)


def match_route(
    routes: Iterable[HttpRoute], method: str, path: str
) -> tuple[HttpRoute, dict[str, str]] | None:
    """The route API Gateway would pick (routes sorted by `priority`), and its path parameters."""
    for route in routes:
        if route.method not in ("ANY", method):
            continue
        parameters = route.path_parameters(path)
        if parameters is not None:
            return route, parameters
    return None
