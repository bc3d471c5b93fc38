"""DNS rebinding: without tokens, only requests addressed to a loopback name (or an allowed host) are answered."""
from __future__ import annotations

import json
import uuid

import pytest
import requests

from analysisstore.auth import digest
from analysisstore.config import TokenEntry, load_config
from helpers import assert_error, header_doc

READ = "read-token"
TOKENS = (TokenEntry("reader", digest(READ), frozenset({"read"})),)


def _get(service, path, host, **headers):
    return requests.get(service.url + path, headers={"Host": host, **headers}, timeout=30)


def test_a_rebinding_page_cannot_read_or_write_a_service_without_tokens(service):
    """A page of attacker.example resolved to 127.0.0.1 sends its own name as Host: every route refuses it (421)."""
    service.database.analysis_header.insert_one(header_doc(uid="secret"))
    rebound = f"attacker.example:{service.port}"
    for path in ("/api/v1/analysis_header", "/api/v1/analysis_header/secret", "/api/v1/analysis/secret",
                 '/analysis_header?{"signature":"find_analysis_header","payload":{}}', "/metrics",
                 "/api/v1/status", "/", "/no/such/route"):
        for host in (rebound, "attacker.example", "localhost.attacker.example", "127.0.0.1.nip.io"):
            response = _get(service, path, host)
            assert_error(response, 421, "MisdirectedRequest", host.split(":")[0])
            assert "secret" not in response.text.replace(host, "")
    # Its writes are same-origin too (Origin matches Host), so the foreign-Origin check lets them pass.
    write = requests.post(f"{service.url}/api/v1/analysis_header", data=json.dumps(header_doc(uid="planted")),
                          headers={"Host": rebound, "Origin": f"http://{rebound}", "Content-Type": "text/plain"},
                          timeout=30)
    assert_error(write, 421, "MisdirectedRequest")
    upload = requests.post(f"{service.url}/api/v1/analysis/secret/files", params={"name": "x.txt"}, data=b"x",
                           headers={"Host": rebound}, timeout=30)
    assert_error(upload, 421, "MisdirectedRequest")
    assert service.count("analysis_header", {"uid": "planted"}) == 0
    assert service.database.analysis_file.count_documents({}) == 0


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST:{port}", "localhost.:{port}", "127.0.0.1:{port}",
                                  "127.0.0.1", "[::1]:{port}", "[::1]", "192.0.2.7:{port}", "[2001:db8::1]"])
def test_loopback_names_and_addresses_are_answered(service, host):
    """localhost, 127.0.0.1 and [::1] (any port) are answered; so is any IP literal, which DNS cannot rebind."""
    response = _get(service, "/api/v1/analysis_header", host.format(port=service.port))
    assert response.status_code == 200, response.text


def test_the_configured_bind_name_is_answered(start_service):
    """A service told to listen on a name (its --host) answers requests addressed to that name."""
    service = start_service(host="localhost", require_auth=False, allowed_hosts=())
    assert _get(service, "/healthz", f"localhost:{service.port}").status_code == 200
    named = start_service(host="store.lab.example", require_auth=False)
    assert _get(named, "/api/v1/analysis_header", f"Store.Lab.Example:{named.port}").status_code == 200
    assert_error(_get(named, "/api/v1/analysis_header", "attacker.example"), 421, "MisdirectedRequest")


def test_with_tokens_any_host_is_answered(start_service):
    """With tokens a rebinding page has no credential to send, and a reverse proxy may use any name."""
    service = start_service(require_auth=True, tokens=TOKENS)
    response = _get(service, "/api/v1/analysis_header", "store.example", Authorization=f"Bearer {READ}")
    assert response.status_code == 200, response.text
    assert_error(_get(service, "/api/v1/analysis_header", "store.example"), 401, "Unauthorized")


def test_allowed_hosts_adds_names_and_is_enforced_with_tokens_too(start_service):
    """allowed_hosts adds names without tokens; once set, it also holds with tokens; '*' turns the check off."""
    open_service = start_service(allowed_hosts=("store.example", ".lab.example"))
    for host in ("store.example", "STORE.EXAMPLE:443", "beamline.lab.example", "localhost"):
        assert _get(open_service, "/api/v1/analysis_header", host).status_code == 200, host
    for host in ("other.example", "lab.example.attacker.example", "xstore.example"):
        assert_error(_get(open_service, "/api/v1/analysis_header", host), 421, "MisdirectedRequest", host)
    secured = start_service(require_auth=True, tokens=TOKENS, allowed_hosts=("store.example",))
    token = {"Authorization": f"Bearer {READ}"}
    assert _get(secured, "/api/v1/analysis_header", "store.example", **token).status_code == 200
    assert_error(_get(secured, "/api/v1/analysis_header", "other.example", **token), 421, "MisdirectedRequest")
    anything = start_service(allowed_hosts=("*",))
    assert _get(anything, "/api/v1/analysis_header", "attacker.example").status_code == 200


def test_allowed_hosts_is_a_setting():
    """allowed_hosts comes from the environment (comma-separated) like every list setting; bad names are refused."""
    config = load_config({}, None, {"ASST_ALLOWED_HOSTS": "store.example, .lab.example"})
    assert config.allowed_hosts == ("store.example", ".lab.example")
    with pytest.raises(ValueError, match="allowed_hosts"):
        load_config({}, None, {"ASST_ALLOWED_HOSTS": "store.example:8999"})


@pytest.mark.subprocess
def test_serve_takes_allowed_hosts_as_a_flag(mongo_uri, mongo):
    """`analysisstore serve --allowed-hosts NAME` answers that name and still refuses others."""
    from serving import Serve

    name = f"asst_hosts_{uuid.uuid4().hex[:10]}"
    server = Serve("--mongo-uri", mongo_uri, "--database", name, "--allowed-hosts", "store.example",
                   "--log-level", "warning")
    try:
        server.wait_ready()
        named = requests.get(f"{server.url}/api/v1/analysis_header", headers={"Host": "store.example"}, timeout=30)
        assert named.status_code == 200, named.text
        other = requests.get(f"{server.url}/api/v1/analysis_header", headers={"Host": "attacker.example"},
                             timeout=30)
        assert_error(other, 421, "MisdirectedRequest", "attacker.example")
    finally:
        server.terminate()
        mongo.drop_database(name)
