// The sandbox page of `offline-access serve --sandbox`: the web sign-in of Google Identity Services' popup code
// model, against the sandbox's fake Google. No build step, no inline script (the page's CSP is script-src 'self').
'use strict';

(function () {
  const DRIVE_APPDATA = 'https://www.googleapis.com/auth/drive.appdata';
  const SCOPES = ['openid', 'email', 'profile', DRIVE_APPDATA].join(' ');

  const main = document.getElementById('sandbox');
  const google = main.dataset.google; // the fake's base URL
  const googleOrigin = new URL(google).origin;
  const clientId = main.dataset.clientId; // the fake's default web client: the server's client ID
  const el = (id) => document.getElementById(id);
  const button = el('sign-in');

  // The sign-in in progress: its popup and the state it must come back with.
  let pending = null;

  function say(text) {
    el('status').textContent = text;
  }

  function fail(text) {
    say('');
    el('error').textContent = text;
    el('error').hidden = false;
  }

  function list(id, items) {
    const ul = el(id);
    ul.replaceChildren();
    for (const item of items.length ? items : ['none']) {
      const li = document.createElement('li');
      li.textContent = item;
      ul.append(li);
    }
  }

  function randomState() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  // What a JSON error of this server says: "code: message".
  async function problem(response) {
    try {
      const body = await response.json();
      return `${body.error}: ${body.message}`;
    } catch (_) {
      return `HTTP ${response.status}`;
    }
  }

  // POSTs a form as an app would: X-Requested-With is this server's CSRF check.
  function postForm(path, fields) {
    return fetch(path, {
      method: 'POST',
      headers: { 'X-Requested-With': 'XMLHttpRequest' },
      body: new URLSearchParams(fields),
    });
  }

  button.addEventListener('click', () => {
    el('error').hidden = true;
    el('result').hidden = true;
    const state = randomState();
    const params = new URLSearchParams({
      client_id: clientId,
      redirect_uri: 'postmessage',
      response_type: 'code',
      scope: SCOPES,
      access_type: 'offline',
      include_granted_scopes: 'true',
      state,
      origin: window.location.origin,
    });
    const popup = window.open(`${google}/o/oauth2/v2/auth?${params}`, 'google-sign-in', 'popup,width=520,height=680');
    if (!popup) {
      fail('The browser blocked the sign-in popup; allow popups for this page.');
      return;
    }
    pending = { state, popup };
    say('Waiting for the Google sign-in window…');
  });

  window.addEventListener('message', (event) => {
    // Only the hand-off of the fake Google, from our popup, for our sign-in.
    if (event.origin !== googleOrigin || pending === null || event.source !== pending.popup) {
      return;
    }
    const message = event.data;
    if (typeof message !== 'object' || message === null || message.state !== pending.state) {
      return;
    }
    pending = null;
    if (message.error) {
      fail(`Google answered ${message.error}: the user did not sign in.`);
      return;
    }
    signIn(message.code).catch((e) => fail(`The sign-in failed: ${e}`));
  });

  async function signIn(code) {
    say('Handing the code to POST /authcode…');
    const answer = await postForm('/authcode', { authCode: code });
    if (!answer.ok) {
      fail(`POST /authcode answered ${await problem(answer)}`);
      return;
    }
    const signedIn = await answer.json();
    el('email').textContent = signedIn.user.email || '(no e-mail granted)';
    el('sub').textContent = signedIn.user.sub;
    list('scopes', signedIn.scopes);
    list('missing-scopes', signedIn.missing_scopes);
    el('offline-access').textContent = signedIn.offline_access ? 'yes (a refresh token is stored)' : 'no';
    el('consent').textContent = signedIn.consent;
    el('appfolder').hidden = true;
    el('appfolder-error').hidden = true;
    el('result').hidden = false;
    await showAppFolder(signedIn.user.sub);
  }

  async function showAppFolder(sub) {
    say('Reading the appDataFolder…');
    // The ID token an app would hold (sandbox only: the fake mints it; see docs/fake-google.md).
    const minted = await postForm('/sandbox/id-token', { sub });
    if (!minted.ok) {
      appFolderFailed(`POST /sandbox/id-token answered ${await problem(minted)}`);
      return;
    }
    const { id_token: idToken } = await minted.json();
    const folder = await fetch('/v1/me/drive/appfolder', { headers: { Authorization: `Bearer ${idToken}` } });
    if (!folder.ok) {
      appFolderFailed(`GET /v1/me/drive/appfolder answered ${await problem(folder)}`);
      return;
    }
    const file = await folder.json();
    el('appfolder-id').textContent = file.id;
    el('appfolder-name').textContent = file.name;
    el('appfolder').hidden = false;
    say('Signed in.');
  }

  function appFolderFailed(text) {
    el('appfolder-error').textContent = text;
    el('appfolder-error').hidden = false;
    say('Signed in.');
  }
})();
