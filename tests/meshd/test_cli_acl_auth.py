"""``meshd acl auth-method``, ``acl binding-rule``, ``login`` and ``logout``
against a real dev agent with ACLs on."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.meshd.cli_support import one_error_line, run_cli
from tests.meshd.jwt_support import pem_public, sign
from tests.meshd.test_api_acl import ROOT, acl_agent
from tests.meshd.test_cli_acl import addr, fields

pytestmark = pytest.mark.e2e


async def test_auth_method_binding_rule_login_logout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    config = tmp_path / "jwt.json"
    config.write_text(
        json.dumps({"JWTValidationPubKeys": [pem_public(key)], "ClaimMappings": {"svc": "service"}})
    )
    async with acl_agent(tmp_path, monkeypatch) as (_agent, api):
        made = await run_cli(
            ["acl", "auth-method", "create", "-type", "jwt", "-name", "ci",
             "-max-token-ttl", "10m", "-config", f"@{config}", *addr(api)]
        )  # fmt: skip
        assert made.exit_code == 0, made.output
        got = fields(made.stdout)
        assert (got["Name"], got["Type"], got["MaxTokenTTL"]) == ("ci", "jwt", "10m0s")
        assert '"ClaimMappings"' in made.stdout
        upd = await run_cli(
            ["acl", "auth-method", "update", "-name", "ci", "-description", "CI jobs", *addr(api)]
        )
        assert fields(upd.stdout)["Description"] == "CI jobs", upd.output
        listed = await run_cli(["acl", "auth-method", "list", *addr(api)])
        assert listed.stdout.startswith("ci:\n   Name:          ci")
        bad = await run_cli(
            ["acl", "auth-method", "create", "-type", "oidc", "-name", "x", *addr(api)]
        )
        assert one_error_line(bad).startswith(
            "Failed to create new auth method: Unexpected response code: 400 "
            "(Invalid Auth Method: Type"
        )

        rule = await run_cli(
            ["acl", "binding-rule", "create", "-method", "ci", "-bind-type", "service",
             "-bind-name", "${value.service}", "-selector", "value.service != db", *addr(api)]
        )  # fmt: skip
        assert rule.exit_code == 0, rule.output
        rule_id = fields(rule.stdout)["ID"]
        read = await run_cli(["acl", "binding-rule", "read", "-id", rule_id, *addr(api)])
        assert fields(read.stdout)["BindName"] == "${value.service}"

        bearer = tmp_path / "jwt"
        bearer.write_text(sign(key, {"svc": "web", "exp": time.time() + 60}))
        sink = tmp_path / "token"
        logged = await run_cli(
            ["login", "-method", "ci", "-bearer-token-file", str(bearer),
             "-token-sink-file", str(sink), *addr(api, "")]
        )  # fmt: skip
        assert logged.exit_code == 0 and logged.stdout == "", logged.output
        secret = sink.read_text()
        assert oct(sink.stat().st_mode & 0o777) == "0o600"
        me = await run_cli(["acl", "token", "read", "-self", *addr(api, secret)])
        assert "Auth Method:      ci" in me.stdout and "web (Datacenters: all)" in me.stdout
        assert (await run_cli(["logout", *addr(api, secret)])).exit_code == 0
        again = await run_cli(["logout", *addr(api, ROOT)])
        assert one_error_line(again).endswith("(Permission denied)")

        gone = await run_cli(["acl", "binding-rule", "delete", "-id", rule_id, *addr(api)])
        assert gone.stdout.strip() == f'Binding rule "{rule_id}" deleted successfully'
        gone = await run_cli(["acl", "auth-method", "delete", "-name", "ci", *addr(api)])
        assert gone.stdout.strip() == 'Auth-method "ci" deleted successfully'


async def test_templated_policy_flags_and_updates_keep_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with acl_agent(tmp_path, monkeypatch) as (_agent, api):
        made = await run_cli(
            ["acl", "token", "create", "-templated-policy", "builtin/service", "-var", "name:api",
             "-format", "json", *addr(api)]
        )  # fmt: skip
        assert made.exit_code == 0, made.output
        token = json.loads(made.stdout)
        assert token["TemplatedPolicies"] == [
            {"TemplateName": "builtin/service", "TemplateVariables": {"Name": "api"}}
        ]
        upd = await run_cli(
            ["acl", "token", "update", "-id", token["AccessorID"], "-description", "x", *addr(api)]
        )
        assert upd.exit_code == 0, upd.output
        assert "Templated Policies:\n   builtin/service\n      Name: api\n" in upd.stdout
        role = await run_cli(
            ["acl", "role", "create", "-name", "dns", "-templated-policy", "builtin/dns",
             "-format", "json", *addr(api)]
        )  # fmt: skip
        role_id = json.loads(role.stdout)["ID"]
        upd = await run_cli(
            ["acl", "role", "update", "-id", role_id, "-description", "d", "-format", "json",
             *addr(api)]
        )  # fmt: skip
        assert json.loads(upd.stdout)["TemplatedPolicies"] == [{"TemplateName": "builtin/dns"}]
        bad = await run_cli(["acl", "token", "create", "-var", "name:x", *addr(api)])
        assert one_error_line(bad) == "Error: -var needs -templated-policy"
