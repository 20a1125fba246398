"""Config entries in HCL as Consul's docs write them (HCL1: blocks inside
object literals, ``Key { ... }`` in a list's objects) give the same entry as
their JSON form, both parsed (``meshd config write``'s loader) and stored."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from trio.testing import MockClock

from meshd.cli.config import _load_entry
from meshd.config.hcl import HCLSyntaxError, parse_hcl
from meshd.config.hcl_objects import hcl1_objects
from tests.meshd.config_support import load, write
from tests.meshd.inproc import inproc_agent

# The HCL tabs of Consul's config entry docs (service-router, -splitter,
# -resolver and -intentions sample entries), each with its JSON form.
ROUTER_HCL = """
Kind = "service-router"
Name = "web"
Routes = [
  {
    Match {
      HTTP {
        PathPrefix = "/admin"
      }
    }

    Destination {
      Service = "admin"
    }
  },
  # NOTE: a default catch-all will send unmatched traffic to "web"
]
"""
ROUTER_JSON = {
    "Kind": "service-router",
    "Name": "web",
    "Routes": [{"Match": {"HTTP": {"PathPrefix": "/admin"}}, "Destination": {"Service": "admin"}}],
}
CANARY_HCL = """
Kind = "service-router"
Name = "web"
Routes = [
  {
    Match {
      HTTP {
        Header = [
          {
            Name  = "x-debug"
            Exact = "1"
          },
        ]
      }
    }
    Destination {
      Service       = "web"
      ServiceSubset = "canary"
    }
  },
  {
    Match {
      HTTP {
        QueryParam = [
          {
            Name  = "x-debug"
            Exact = "1"
          },
        ]
      }
    }
    Destination {
      Service       = "web"
      ServiceSubset = "canary"
    }
  },
]
"""
CANARY_JSON = {
    "Kind": "service-router",
    "Name": "web",
    "Routes": [
        {
            "Match": {"HTTP": {key: [{"Name": "x-debug", "Exact": "1"}]}},
            "Destination": {"Service": "web", "ServiceSubset": "canary"},
        }
        for key in ("Header", "QueryParam")
    ],
}
SPLITTER_HCL = """
Kind = "service-splitter"
Name = "web"
Splits = [
  {
    Weight        = 90
    ServiceSubset = "v1"
  },
  {
    Weight        = 10
    ServiceSubset = "v2"
    RequestHeaders = {
      Set = {
        "X-Web-Version" : "from-v2"
      }
    }
  },
]
"""
SPLITTER_JSON = {
    "Kind": "service-splitter",
    "Name": "web",
    "Splits": [
        {"Weight": 90, "ServiceSubset": "v1"},
        {
            "Weight": 10,
            "ServiceSubset": "v2",
            "RequestHeaders": {"Set": {"X-Web-Version": "from-v2"}},
        },
    ],
}
RESOLVER_HCL = """
Kind          = "service-resolver"
Name          = "web"
DefaultSubset = "v1"
ConnectTimeout = "15s"
Subsets = {
  "v1" = {
    Filter = "Service.Meta.version == v1"
  }
  "v2" = {
    Filter = "Service.Meta.version == v2"
  }
}
Failover = {
  "*" = {
    Datacenters = ["dc3", "dc4"]
  }
}
"""
RESOLVER_JSON = {
    "Kind": "service-resolver",
    "Name": "web",
    "DefaultSubset": "v1",
    "ConnectTimeout": "15s",
    "Subsets": {
        "v1": {"Filter": "Service.Meta.version == v1"},
        "v2": {"Filter": "Service.Meta.version == v2"},
    },
    "Failover": {"*": {"Datacenters": ["dc3", "dc4"]}},
}
REDIRECT_HCL = """
Kind = "service-resolver"
Name = "web-dc2"
Redirect {
  Service    = "web"
  Datacenter = "dc2"
}
"""
REDIRECT_JSON = {
    "Kind": "service-resolver",
    "Name": "web-dc2",
    "Redirect": {"Service": "web", "Datacenter": "dc2"},
}
INTENTIONS_HCL = """
Kind = "service-intentions"
Name = "api"
Sources = [
  {
    Name = "admin-dashboard"
    Permissions = [
      {
        Action = "allow"
        HTTP {
          PathPrefix = "/v2"
          Methods   = ["GET", "PUT", "POST", "DELETE", "HEAD"]
        }
      }
    ]
  },
  {
    Name = "report-generator"
    Permissions = [
      {
        Action = "allow"
        HTTP {
          PathPrefix = "/v2/widgets"
          Methods   = ["GET"]
        }
      }
    ]
  }
  # NOTE: a default catch-all based on the default ACL policy will apply to
  # unmatched connections and requests. Typically this will be DENY.
]
"""
INTENTIONS_JSON = {
    "Kind": "service-intentions",
    "Name": "api",
    "Sources": [
        {
            "Name": name,
            "Permissions": [
                {"Action": "allow", "HTTP": {"PathPrefix": prefix, "Methods": methods}}
            ],
        }
        for name, prefix, methods in (
            ("admin-dashboard", "/v2", ["GET", "PUT", "POST", "DELETE", "HEAD"]),
            ("report-generator", "/v2/widgets", ["GET"]),
        )
    ],
}
EXAMPLES = {
    "router": (ROUTER_HCL, ROUTER_JSON),
    "router-canary": (CANARY_HCL, CANARY_JSON),
    "splitter": (SPLITTER_HCL, SPLITTER_JSON),
    "resolver": (RESOLVER_HCL, RESOLVER_JSON),
    "resolver-redirect": (REDIRECT_HCL, REDIRECT_JSON),
    "intentions": (INTENTIONS_HCL, INTENTIONS_JSON),
}


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_consul_docs_hcl_entry_loads_as_its_json(name: str, tmp_path: Path) -> None:
    hcl, want = EXAMPLES[name]
    path = tmp_path / f"{name}.hcl"
    path.write_text(hcl)
    assert _load_entry(str(path)) == want


def test_blocks_and_items_on_one_line_as_hcl1_takes_them() -> None:
    text = 'Routes = [ { Match { HTTP { PathPrefix = "/admin" } } Destination { Service = "a" } } ]'
    assert parse_hcl(text) == {
        "Routes": [{"Match": {"HTTP": {"PathPrefix": "/admin"}}, "Destination": {"Service": "a"}}]
    }
    assert parse_hcl('M = { a = 1 b = "x{" c { d = true } }') == {
        "M": {"a": 1, "b": "x{", "c": {"d": True}}
    }


def test_bodies_strings_and_comments_are_left_alone() -> None:
    text = 'service {\n  name = "a { b"  # c { d\n  meta = { k = "v" }\n}\n'
    assert hcl1_objects(text) == text
    heredoc = "M = {\n  d = <<EOT\nx { y\nEOT\n}\n"
    assert hcl1_objects(heredoc) == heredoc
    assert parse_hcl(heredoc) == {"M": {"d": "x { y"}}


def test_a_syntax_error_keeps_its_line() -> None:
    with pytest.raises(HCLSyntaxError) as err:
        parse_hcl('Kind = "service-router"\nRoutes = [\n  { Match { HTTP { = } } }\n]\n')
    assert err.value.line == 3


async def test_hcl_and_json_store_the_same_entries(autojump_clock: MockClock) -> None:
    def stored(entry: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in entry.items() if k not in ("CreateIndex", "ModifyIndex", "Hash")}

    async with inproc_agent() as (_agent, api):
        for svc in ("web", "web-dc2", "admin", "api"):
            body = {"Kind": "service-defaults", "Name": svc, "Protocol": "http"}
            assert (await api.put("/v1/config", body)).text == "true"
        # (router-canary needs a "canary" subset the resolver example lacks.)
        for name in sorted(set(EXAMPLES) - {"router-canary"}):
            hcl, as_json = EXAMPLES[name]
            path = f"/v1/config/{as_json['Kind']}/{as_json['Name']}"
            got = []
            for entry in (parse_hcl(hcl), as_json):
                resp = await api.put("/v1/config", entry)
                assert (resp.status, resp.text) == (200, "true"), name
                got.append(stored((await api.get(path)).json()))
            assert got[0] == got[1], name


def test_an_agent_config_with_hcl1_blocks_in_objects_loads_as_its_json(tmp_path: Path) -> None:
    hcl = write(
        tmp_path,
        "a.hcl",
        'services = [\n  { name = "web" port = 80\n    check { ttl = "30s" } },\n]\n',
    )
    as_json = write(
        tmp_path, "a.json", {"services": [{"name": "web", "port": 80, "check": {"ttl": "30s"}}]}
    )
    flags = {"data_dir": "/d"}
    assert load([hcl], flags=flags)[0] == load([as_json], flags=flags)[0]
