"""An unmodified Microsoft Graph Python SDK (msgraph-sdk) pointed at graphgate.

usage: update_device_account.py BASE_URL API_KEY DEVICE_ID PASSWORD
Runs updateWindowsDeviceAccount through the SDK's own request builders, then a call the
policy refuses, and prints one JSON line per call with what the SDK returned or raised.
"""
import asyncio
import json
import sys
from urllib.parse import urlparse

from kiota_abstractions.authentication import (
    AccessTokenProvider, AllowedHostsValidator, BaseBearerTokenAuthenticationProvider)
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.device_management.managed_devices.item.update_windows_device_account.update_windows_device_account_post_request_body import \
    UpdateWindowsDeviceAccountPostRequestBody
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.generated.models.update_windows_device_account_action_parameter import \
    UpdateWindowsDeviceAccountActionParameter
from msgraph.generated.models.windows_device_azure_a_d_account import WindowsDeviceAzureADAccount


class StaticTokenProvider(AccessTokenProvider):
    """Hands the caller's API key to the SDK as its bearer token, for the gateway's host only."""

    def __init__(self, token, allowed_hosts):
        self._token, self._validator = token, AllowedHostsValidator(allowed_hosts)

    async def get_authorization_token(self, uri, additional_authentication_context={}):
        return self._token if self._validator.is_url_host_valid(uri) else ""

    def get_allowed_hosts_validator(self):
        return self._validator


def client(base_url, key):
    host = urlparse(base_url).hostname
    adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(StaticTokenProvider(key, [host])))
    adapter.base_url = base_url  # before GraphServiceClient(), which copies it
    return GraphServiceClient(request_adapter=adapter)


def body(password, email="room1@contoso.com"):
    return UpdateWindowsDeviceAccountPostRequestBody(
        update_windows_device_account_action_parameter=UpdateWindowsDeviceAccountActionParameter(
            device_account=WindowsDeviceAzureADAccount(password=password, user_principal_name=email),
            password_rotation_enabled=True, calendar_sync_enabled=True,
            device_account_email=email, exchange_server="outlook.office365.com",
            session_initiation_protocal_address=f"sip:{email}"))


async def call(graph, device, request_body):
    try:
        result = await graph.device_management.managed_devices.by_managed_device_id(device) \
            .update_windows_device_account.post(request_body)
        return {"ok": True, "result": result}
    except ODataError as e:
        return {"ok": False, "status": e.response_status_code, "code": e.error.code,
                "request_id": e.error.inner_error.request_id if e.error.inner_error else None}


async def main():
    base_url, key, device, password = sys.argv[1:5]
    graph = client(base_url, key)
    print(json.dumps(await call(graph, device, body(password))))
    print(json.dumps(await call(client(base_url, "not-a-known-key"), device, body(password))))
    print(json.dumps(await call(graph, "00000000-0000-4000-8000-000000000000", body(password))))


asyncio.run(main())
