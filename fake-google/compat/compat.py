"""Runs Google's own Python client libraries against a running fake-google.

Usage: python compat.py BASE_URL   (the venv needs oauth2client, google-auth, google-api-python-client)
Exits non-zero on the first failure.
"""
import json
import sys
import tempfile
import urllib.request

import httplib2
import google.auth.transport.requests
import google.oauth2.credentials
from google.oauth2 import id_token as g_id_token
from oauth2client import client

BASE = sys.argv[1].rstrip("/")


def post_json(path, body):
    req = urllib.request.Request(BASE + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        return json.load(resp)


def get_json(path):
    with urllib.request.urlopen(BASE + path) as resp:
        return json.load(resp)


def step(name):
    print("ok:", name)


secret = get_json("/_fake/client_secret.json")
client_id = secret["web"]["client_id"]
with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
    json.dump(secret, f)
    secret_file = f.name

# 1. The seed: oauth2client.credentials_from_clientsecrets_and_code (redirect_uri defaults to postmessage).
minted = post_json("/_fake/codes", {"email": "py@example.com", "azp": "android-client.apps.googleusercontent.com"})
creds = client.credentials_from_clientsecrets_and_code(
    secret_file, ["https://www.googleapis.com/auth/drive.appdata", "profile", "email"], minted["code"])
assert creds.refresh_token, "first grant has a refresh token"
assert creds.id_token["sub"] == minted["sub"], creds.id_token
assert creds.id_token["email"] == "py@example.com"
step("oauth2client exchange")

# 2. oauth2client verify_id_token against the v1 PEM certificates.
raw_id_token = creds.token_response["id_token"]
claims = client.verify_id_token(raw_id_token, client_id, http=httplib2.Http(),
                                cert_uri=BASE + "/oauth2/v1/certs")
assert claims["sub"] == minted["sub"]
step("oauth2client verify_id_token with v1 certs")

# 3. oauth2client refresh.
creds.token_uri = BASE + "/token"
old = creds.access_token
creds.refresh(httplib2.Http())
assert creds.access_token != old
step("oauth2client refresh")

request = google.auth.transport.requests.Request()
for certs_url in (BASE + "/oauth2/v3/certs", BASE + "/oauth2/v1/certs"):
    info = g_id_token.verify_token(raw_id_token, request, audience=client_id, certs_url=certs_url)
    assert info["sub"] == minted["sub"]
step("google-auth verify_token (JWKS and PEM)")

# 5. google-auth Credentials.refresh.
gcreds = google.oauth2.credentials.Credentials(
    token=None, refresh_token=creds.refresh_token, token_uri=BASE + "/token",
    client_id=client_id, client_secret=secret["web"]["client_secret"])
gcreds.refresh(request)
assert gcreds.token and gcreds.token.startswith("ya29.")
assert gcreds.expiry is not None
step("google-auth Credentials.refresh")

# 6. Revocation (oauth2client revokes with GET ?token=).
creds.revoke_uri = BASE + "/revoke"
creds.revoke(httplib2.Http())
try:
    gcreds.refresh(request)
    raise AssertionError("refresh after revoke must fail")
except google.auth.exceptions.RefreshError as e:
    assert "invalid_grant" in str(e), e
step("revoke then refresh fails with invalid_grant")

# 7. A reused code gives oauth2client's FlowExchangeError invalid_grant.
try:
    client.credentials_from_clientsecrets_and_code(secret_file, ["email"], minted["code"])
    raise AssertionError("code reuse must fail")
except client.FlowExchangeError as e:
    assert "invalid_grant" in str(e), e
step("code reuse -> FlowExchangeError invalid_grant")

# 8. Drive v3 files.get('appfolder') with google-api-python-client (static discovery).
try:
    from googleapiclient import discovery
    minted = post_json("/_fake/codes", {"email": "drive@example.com"})
    creds = client.credentials_from_clientsecrets_and_code(
        secret_file, ["https://www.googleapis.com/auth/drive.appdata", "profile", "email"], minted["code"])
    gcreds = google.oauth2.credentials.Credentials(token=creds.access_token)
    drive = discovery.build("drive", "v3", credentials=gcreds, static_discovery=True,
                            client_options={"api_endpoint": BASE + "/drive/v3/"})
    folder = drive.files().get(fileId="appfolder").execute()
    assert folder.get("id"), folder
    step("google-api-python-client files.get('appfolder')")
except ImportError:
    print("skip: google-api-python-client not installed")

# 9. The browser flow with google-auth-oauthlib's Flow: PKCE S256, auto_consent for login_hint.
try:
    import os
    from google_auth_oauthlib.flow import Flow
    os.environ["OAUTHLIB_INSECURE_TRANSPORT"] = "1"  # the fake speaks http
    os.environ["OAUTHLIB_RELAX_TOKEN_SCOPE"] = "1"   # Google answers expanded scopes
    post_json("/_fake/settings", {"auto_consent": True})
    flow = Flow.from_client_config(
        secret, scopes=["openid", "https://www.googleapis.com/auth/userinfo.email",
                        "https://www.googleapis.com/auth/drive.appdata"],
        redirect_uri="http://localhost:8080/callback")
    auth_url, state = flow.authorization_url(access_type="offline", login_hint="flow@example.com")
    assert "code_challenge_method=S256" in auth_url, auth_url
    redirect = urllib.request.build_opener(type("NoRedirect", (urllib.request.HTTPRedirectHandler,), {
        "redirect_request": lambda self, *args: None}))
    try:
        redirect.open(auth_url)
        raise AssertionError("the authorization endpoint must redirect")
    except urllib.error.HTTPError as e:
        assert e.code == 302, e.code
        callback = e.headers["Location"]
    flow.fetch_token(authorization_response=callback)
    assert flow.credentials.refresh_token, "offline access on first consent"
    post_json("/_fake/settings", {"auto_consent": False})
    step("google-auth-oauthlib Flow authorization_url + fetch_token (PKCE)")
except ImportError:
    print("skip: google-auth-oauthlib not installed")

print("all Python compatibility checks passed")
