"""The real msgraph-sdk against the project's own Graph server: the shapes the Entra target will
rely on (typed create, raw JSON paging through the adapter, errors) hold for the real client."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from azure.core.credentials import AccessToken
from azure.core.credentials_async import AsyncTokenCredential
from kiota_abstractions.api_error import APIError
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.models.password_profile import PasswordProfile
from msgraph.generated.models.user import User

from tests.fakes.graph_server import GraphServer


class StaticToken(AsyncTokenCredential):
    """A credential that never leaves the machine: the fake checks this bearer token."""

    def __init__(self, token: str) -> None:
        self.token = token

    async def get_token(self, *scopes, **kwargs):
        return AccessToken(self.token, int(time.time()) + 3600)

    async def close(self) -> None:
        pass

    async def __aexit__(self, *exc) -> None:
        pass


def client_for(server: GraphServer, token: str | None = None) -> GraphServiceClient:
    auth = AzureIdentityAuthenticationProvider(
        StaticToken(token or server.token), scopes=["https://graph.microsoft.com/.default"]
    )
    adapter = GraphRequestAdapter(auth)
    adapter.base_url = server.url
    return GraphServiceClient(request_adapter=adapter)


def test_typed_create_raw_paging_and_errors_with_the_real_sdk():
    async def scenario(server: GraphServer) -> None:
        client = client_for(server)
        created = await client.users.post(
            User(
                account_enabled=True,
                display_name="Zoë Çelik",
                mail_nickname="zoe.celik",
                user_principal_name="zoe.celik@leerling.school.be",
                employee_id="1451929",
                password_profile=PasswordProfile(password="Boom-Vis-Zon-12"),
            )
        )
        assert created.id and created.display_name == "Zoë Çelik"
        for i in range(150):
            server.add_user(
                displayName=f"Pupil {i}",
                userPrincipalName=f"p{i}@leerling.school.be",
                mailNickname=f"p{i}",
                accountEnabled=True,
                employeeId=str(i),
                passwordProfile={"password": "Zee-Dak-Pen-56"},
            )
        # Bulk reads as raw JSON through the SDK's adapter, following @odata.nextLink.
        url = f"{server.url}/users?$select=id,employeeId&$top=100"
        seen = []
        while url:
            info = RequestInformation()
            info.http_method = Method.GET
            info.url = url  # as given: a URL template would eat the commas of $select
            info.headers.try_add("Accept", "application/json")
            raw = await client.request_adapter.send_primitive_async(info, "bytes", {})
            page = json.loads(raw)
            seen += page["value"]
            url = page.get("@odata.nextLink")
        assert len(seen) == 151 and any(u.get("employeeId") == "1451929" for u in seen)
        # Graph's error body reaches the caller as an APIError with the status and the code.
        with pytest.raises(APIError) as caught:
            await client.users.post(
                User(
                    account_enabled=True,
                    display_name="Dubbel",
                    mail_nickname="zoe.celik2",
                    user_principal_name="zoe.celik@leerling.school.be",
                    password_profile=PasswordProfile(password="Kat-Uil-Vos-34"),
                )
            )
        assert caught.value.response_status_code == 400
        # A wrong token is refused (what catches the allowed_hosts trap of the reference).
        with pytest.raises(APIError) as refused:
            await client_for(server, token="wrong").users.get()
        assert refused.value.response_status_code == 401

    with GraphServer() as server:
        asyncio.run(scenario(server))
        assert [r.headers.get("authorization") for r in server.requests[:1]] == [
            f"Bearer {server.token}"
        ]
