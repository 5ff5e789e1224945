"""Every storage server answers GET /healthcheck, as Swift's do."""


def test_every_storage_server_has_a_healthcheck(start_server):
    for role in ("account", "container", "object"):
        server = start_server(role, name=f"hc-{role}")
        status, _, body = server.request("GET", "/healthcheck")
        assert (status, body) == (200, b"OK"), role
