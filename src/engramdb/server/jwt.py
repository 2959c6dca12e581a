"""JWT bearer tokens: HS256 with a shared secret, or RS256/ES256 with keys from a JWKS file or URL.

Claims follow Supabase: ``sub`` (the subject), ``role`` (``service_role`` → admin,
``authenticated`` → read and write, anything else → read), an optional ``scope`` / ``scopes``
claim narrowing that, and the organization in a configurable claim (``org_id`` by default; a
dotted path such as ``app_metadata.org_id`` reaches into nested claims).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import jwt as pyjwt

from ..errors import AuthenticationError, ConfigurationError
from ..service.organizations import check_organization_id
from ..settings import Settings
from .context import Principal

__all__ = ["JwtVerifier", "looks_like_jwt"]

_ROLE_SCOPES = {
    "service_role": frozenset({"read", "write", "admin"}),
    "authenticated": frozenset({"read", "write"}),
}
_ASYMMETRIC = ["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"]


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2 and token.startswith("eyJ")


class JwtVerifier:
    """Verifies tokens and turns their claims into a :class:`Principal`."""

    def __init__(self, settings: Settings) -> None:
        self._secret = settings.jwt_secret
        self._jwks_source = settings.jwt_jwks
        self._org_claim = settings.jwt_org_claim
        self._audience = settings.jwt_audience
        self._home = settings.organization
        self._jwks_client: pyjwt.PyJWKClient | None = None
        self._jwks_file: pyjwt.PyJWKSet | None = None
        self._lock = threading.Lock()
        src = self._jwks_source
        if src and not src.startswith(("http://", "https://")):
            try:
                self._jwks_file = pyjwt.PyJWKSet.from_dict(json.loads(Path(src).read_text()))
            except (OSError, ValueError, pyjwt.PyJWTError) as exc:
                raise ConfigurationError(f"cannot read the JWKS file {src}: {exc}") from exc

    @property
    def enabled(self) -> bool:
        return bool(self._secret or self._jwks_source)

    def _key_for(self, token: str, header: dict[str, Any]) -> tuple[Any, list[str]]:
        alg = str(header.get("alg", ""))
        if alg == "HS256":
            if not self._secret:
                raise AuthenticationError("HS256 tokens are not accepted by this server")
            return self._secret, ["HS256"]
        if alg not in _ASYMMETRIC or not self._jwks_source:
            raise AuthenticationError(
                f"tokens signed with {alg or 'no algorithm'} are not accepted"
            )
        kid = header.get("kid")
        if self._jwks_file is not None:
            for key in self._jwks_file.keys:
                if kid is None or key.key_id == kid:
                    return key.key, [alg]
            raise AuthenticationError("the token's signing key is not in the JWKS")
        with self._lock:
            if self._jwks_client is None:
                self._jwks_client = pyjwt.PyJWKClient(str(self._jwks_source), cache_keys=True)
            client = self._jwks_client
        try:
            return client.get_signing_key_from_jwt(token).key, [alg]
        except pyjwt.PyJWKClientError as exc:
            raise AuthenticationError(f"cannot find the token's signing key: {exc}") from None

    def verify(self, token: str) -> Principal:
        if not self.enabled:
            raise AuthenticationError("JWT authentication is not configured on this server")
        try:
            header = pyjwt.get_unverified_header(token)
            key, algorithms = self._key_for(token, header)
            claims: dict[str, Any] = pyjwt.decode(
                token,
                key,
                algorithms=algorithms,
                audience=self._audience,
                options={"require": ["exp", "sub"], "verify_aud": self._audience is not None},
            )
        except pyjwt.ExpiredSignatureError:
            raise AuthenticationError("the token has expired") from None
        except pyjwt.PyJWTError as exc:
            raise AuthenticationError(f"invalid token: {exc}") from None
        org = _claim(claims, self._org_claim)
        if not isinstance(org, str) or not org:
            raise AuthenticationError(
                f"the token carries no organization (claim {self._org_claim!r})"
            )
        try:
            check_organization_id(org)
        except Exception:
            raise AuthenticationError("the token's organization is not a valid id") from None
        scopes = _ROLE_SCOPES.get(str(claims.get("role", "")), frozenset({"read"}))
        narrowed = claims.get("scopes", claims.get("scope"))
        if narrowed is not None:
            asked = set(narrowed.split() if isinstance(narrowed, str) else narrowed)
            scopes = frozenset(scopes & asked)
        return Principal(
            organization=org,
            scopes=scopes,
            kind="jwt",
            subject=str(claims["sub"]),
            operator=org == self._home and "admin" in scopes,
        )


def _claim(claims: dict[str, Any], path: str) -> Any:
    value: Any = claims
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value
