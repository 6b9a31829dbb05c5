"""The sign-in half of the Python backend on Google's "Enabling Server-Side Access" page, for the load generator's
`signin-peer` scenario: Flask, oauth2client's credentials_from_clientsecrets_and_code (the token URI comes from the
client secret file: the fake's) and oauth2client's file Storage, one file per user. The bench runs it with
`python -m gunicorn --chdir <this directory> -w 2 --threads 8 -b 127.0.0.1:PORT app:app`, CLIENT_SECRET_FILE and
STORE_DIR in the environment. /authcode answers like /storeauthcode, so the same load drives both servers."""
import os

from flask import Flask, abort, jsonify, request
from oauth2client import client
from oauth2client.file import Storage

CLIENT_SECRET_FILE = os.environ["CLIENT_SECRET_FILE"]
STORE_DIR = os.environ["STORE_DIR"]
SCOPES = ["https://www.googleapis.com/auth/drive.appdata", "profile", "email"]
app = Flask(__name__)


@app.route("/storeauthcode", methods=["POST"])
@app.route("/authcode", methods=["POST"])
def storeauthcode():
    if not request.headers.get("X-Requested-With"):
        abort(403)
    code = request.form.get("authCode") or request.get_data(as_text=True)
    credentials = client.credentials_from_clientsecrets_and_code(CLIENT_SECRET_FILE, SCOPES, code)
    sub = credentials.id_token["sub"]
    Storage(os.path.join(STORE_DIR, sub + ".json")).put(credentials)
    return jsonify(sub=sub, email=credentials.id_token.get("email"))
